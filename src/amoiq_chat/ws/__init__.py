"""The raw WebSocket transport: sockets with bounded send queues, the local hub of rooms, frame handlers by type."""
