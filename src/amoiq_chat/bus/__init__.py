"""The bus: every process's Redis wire protocol (rooms and keys, events, pub/sub, the batch announcement)."""
from .events import FOR_ALL, FOR_STAFF, FOR_VISITORS, Event, decode_event, encode_event
from .pubsub import Bus

__all__ = ["FOR_ALL", "FOR_STAFF", "FOR_VISITORS", "Bus", "Event", "decode_event", "encode_event"]
