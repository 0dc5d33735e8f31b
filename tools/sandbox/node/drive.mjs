// Drives the local Twilio sandbox with the real twilio-node library.
//
//   echo '{"base_url": "http://127.0.0.1:8080", "username": "AC…", "password": "…",
//          "account_sid": "AC…", "calls": [{"op": "create", "params": {…}}, …]}' | node drive.mjs
//
// Prints one JSON line, {"results": [{"ok": …} | {"error": …}, …]}, one result per call.
// A failed call is a result, not a crash: the exit status is non-zero only when the
// driver itself is broken or misused.
//
// The library is pointed at the sandbox only through its documented `httpClient` option
// (advanced-examples/custom-http-client.md in twilio-node); its code is not patched.

import twilio from "twilio";

// The library reads these from the environment: TWILIO_EDGE/TWILIO_REGION rewrite
// api.twilio.com to e.g. api.sydney.us1.twilio.com before the request reaches the
// http client, TWILIO_LOG_LEVEL=debug prints to stdout (our result channel), and
// TWILIO_CA_BUNDLE is read from disk. None of them may leak in from the test's shell.
for (const name of Object.keys(process.env)) {
  if (name.startsWith("TWILIO_")) delete process.env[name];
}

const TWILIO_ORIGIN = "https://api.twilio.com";

// A request for anything but api.twilio.com means the hook is wrong, not the sandbox,
// so it ends the run instead of becoming a result.
class HookError extends Error {}

// The library's own RequestClient does the real work (Basic auth, qs form encoding,
// headers, axios); only the origin changes, so the sandbox sees what Twilio would.
class SandboxRequestClient extends twilio.RequestClient {
  constructor(baseUrl) {
    super();
    this.baseUrl = baseUrl.replace(/\/+$/, "");
  }

  request(opts) {
    const url = new URL(opts.uri);
    if (url.origin !== TWILIO_ORIGIN) {
      throw new HookError(`unexpected request to ${opts.uri}; only ${TWILIO_ORIGIN} is redirected`);
    }
    return super.request({ ...opts, uri: this.baseUrl + url.pathname + url.search });
  }
}

const OPS = {
  create: (client, call) => client.messages.create(call.params).then((m) => m.toJSON()),
  fetch: (client, call) => client.messages(call.sid).fetch().then((m) => m.toJSON()),
  list: (client, call) => client.messages.list(call.params ?? {}).then((ms) => ms.map((m) => m.toJSON())),
};

function describe(e) {
  // RestException carries code/status/moreInfo; anything else (a network error, the
  // library's own argument checks) keeps the same shape with nulls.
  return {
    name: e?.constructor?.name ?? typeof e,
    code: e?.code ?? null,
    status: e?.status ?? null,
    message: e?.message ?? String(e),
    moreInfo: e?.moreInfo ?? null,
  };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function main() {
  const input = await readStdin();
  for (const call of input.calls) {
    if (!(call.op in OPS)) throw new Error(`unknown op ${JSON.stringify(call.op)}`);
  }

  // With an API key the username is SK…, and the account to address comes from accountSid.
  const client = twilio(input.username, input.password, {
    accountSid: input.account_sid ?? undefined,
    httpClient: new SandboxRequestClient(input.base_url),
  });

  const results = [];
  for (const call of input.calls) {
    try {
      results.push({ ok: await OPS[call.op](client, call) });
    } catch (e) {
      if (e instanceof HookError) throw e;
      results.push({ error: describe(e) });
    }
  }
  process.stdout.write(JSON.stringify({ results }) + "\n");
}

main().catch((e) => {
  process.stderr.write(`drive.mjs: ${e?.stack ?? e}\n`);
  process.exitCode = 2;
});
