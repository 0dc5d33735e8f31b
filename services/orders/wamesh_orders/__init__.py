"""wamesh's orders: each tenant's WhatsApp ordering bot and the order lifecycle."""
