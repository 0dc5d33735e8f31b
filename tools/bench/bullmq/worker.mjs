// The seeds' outbound stack, as tools/bench/dispatch.py measures wamesh's dispatcher against
// it: a BullMQ queue in Redis and one Node worker calling the real twilio library.
//
//   node worker.mjs fill < config.json   # add config.jobs to the queue, print {"added": n}
//   node worker.mjs work < config.json   # send until config.expect jobs finished, print figures
//
// config: {"redis": {"host", "port"}, "queue", "concurrency", "base_url", "status_callback",
//          "accounts": {tenant: {"sid", "token", "sender"}}, "expect",
//          "jobs": [{"key", "tenant", "to", "body"}]}
//
// The job options are the seeds' (../shared/seeds/000: 5 attempts, exponential back-off from
// 2 s, 100 completed and 50 failed jobs kept; 003: the job id is the idempotency key). The
// library is pointed at the sandbox only through its documented `httpClient` option, as
// tools/sandbox/node/drive.mjs does; its code is not patched.

import http from "node:http";
import { Queue, Worker } from "bullmq";
import twilio from "twilio";

// TWILIO_EDGE/TWILIO_REGION would rewrite the host before our hook sees it, and
// TWILIO_LOG_LEVEL=debug would print to stdout, our result channel.
for (const name of Object.keys(process.env)) {
  if (name.startsWith("TWILIO_")) delete process.env[name];
}

const TWILIO_ORIGIN = "https://api.twilio.com";
const JOB_OPTIONS = {
  attempts: 5,
  backoff: { type: "exponential", delay: 2000 },
  removeOnComplete: 100,
  removeOnFail: 50,
};

// The library's own RequestClient does the work (auth, form encoding, axios); only the origin
// changes. Its https.Agent (keep-alive, 20 sockets per host) is what it would use against
// Twilio; the sandbox speaks plain http, so the same options make an http.Agent, else axios
// would fall back to Node's global agent with no socket cap.
class SandboxRequestClient extends twilio.RequestClient {
  constructor(baseUrl) {
    super();
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.axios.defaults.httpAgent = new http.Agent(this.axios.defaults.httpsAgent.options);
  }

  request(opts) {
    const url = new URL(opts.uri);
    if (url.origin !== TWILIO_ORIGIN) throw new Error(`unexpected request to ${opts.uri}`);
    return super.request({ ...opts, uri: this.baseUrl + url.pathname + url.search });
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function fill(config) {
  const queue = new Queue(config.queue, { connection: config.redis });
  // addBulk in slices: one MULTI of 20,000 jobs would hold Redis for the whole of it.
  for (let at = 0; at < config.jobs.length; at += 1000) {
    await queue.addBulk(
      config.jobs.slice(at, at + 1000).map((job) => ({
        name: "whatsapp-reply",
        data: job,
        opts: { ...JOB_OPTIONS, jobId: job.key },
      })),
    );
  }
  await queue.close();
  return { added: config.jobs.length };
}

async function work(config) {
  // One client per tenant, as the seeds keep one per Twilio account.
  const clients = new Map();
  for (const [tenant, account] of Object.entries(config.accounts)) {
    clients.set(tenant, {
      sender: account.sender,
      client: twilio(account.sid, account.token, {
        httpClient: new SandboxRequestClient(config.base_url),
      }),
    });
  }
  let completed = 0;
  let failed = 0;
  let firstMs = null;
  let lastMs = null;
  const errors = {};
  const started = process.cpuUsage();
  let done;
  const finished = new Promise((resolve) => (done = resolve));

  const worker = new Worker(
    config.queue,
    async (job) => {
      const { tenant, to, body } = job.data;
      const { client, sender } = clients.get(tenant);
      const message = await client.messages.create({
        to,
        from: sender,
        body,
        ...(config.status_callback ? { statusCallback: config.status_callback } : {}),
      });
      return message.sid;
    },
    { connection: config.redis, concurrency: config.concurrency },
  );
  const settle = () => {
    const now = Date.now();
    firstMs ??= now;
    lastMs = now;
    if (completed + failed >= config.expect) done();
  };
  worker.on("completed", () => {
    completed += 1;
    settle();
  });
  // "failed" fires for every failed attempt; only the last one finishes the job.
  worker.on("failed", (job, error) => {
    const code = String(error?.code ?? error?.message ?? "unknown");
    errors[code] = (errors[code] ?? 0) + 1;
    if (job && job.attemptsMade >= (job.opts.attempts ?? 1)) {
      failed += 1;
      settle();
    }
  });
  worker.on("error", (error) => process.stderr.write(`worker: ${error?.stack ?? error}\n`));
  await finished;
  const cpu = process.cpuUsage(started);
  await worker.close();
  return {
    completed,
    failed,
    errors,
    first_done_ms: firstMs,
    last_done_ms: lastMs,
    worker_cpu_s: (cpu.user + cpu.system) / 1e6,
  };
}

const MODES = { fill, work };

async function main() {
  const mode = MODES[process.argv[2]];
  if (mode === undefined) throw new Error("usage: node worker.mjs fill|work < config.json");
  const result = await mode(await readStdin());
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((e) => {
  process.stderr.write(`worker.mjs: ${e?.stack ?? e}\n`);
  process.exitCode = 2;
});
