"""Marshmallow schemas of the answers of the support workflow's routes (views/support.py)."""
from __future__ import annotations

from marshmallow import Schema, fields

from . import Bool, Int, always, answer, many, nested, nullable


class QueueStatsOut(Schema):
    waitingSessions = always(Int)
    availableAgents = always(Int)
    averageWaitTime = always(metadata={"examples": ["2.0 minutes"]})


class WaitingSessionOut(Schema):
    sessionId = always()
    siteKey = always()
    businessName = nullable()
    visitorName = always()
    waitingTime = always(Int, metadata={"description": "minutes"})
    escalated = always(Bool)
    addedAt = always()


class ActiveChatOut(Schema):
    session_id = always()
    site_key = always()
    visitor_name = always()
    visitor_email = nullable()
    business_name = nullable()
    messageCount = always(Int)
    started_at = always()
    accepted_at = nullable()
    agent_id = always(Int)
    user_id = nullable()
    visitor_info = always(fields.Dict)
    lastSeq = always(Int)


EscalateAnswer = answer("EscalateAnswer", {
    "sessionId": always(), "queuePosition": always(Int, metadata={"description": "0 when it is not waiting"}),
    "estimatedWait": always(Int, metadata={"description": "minutes"}), "status": always()}, message=True)
QueuePositionAnswer = answer("QueuePositionAnswer", {
    "position": always(Int, metadata={"description": "0 when the session is not waiting"}),
    "estimatedWait": always(Int, metadata={"description": "minutes"}), "status": always()})
QueueStatsAnswer = answer("QueueStatsAnswer", {"stats": nested(QueueStatsOut)})
WaitingSessionsAnswer = Schema.from_dict({"success": always(Bool), "sessions": many(WaitingSessionOut)},
                                         name="WaitingSessionsAnswer")
ActiveChatsAnswer = Schema.from_dict({"success": always(Bool), "data": many(ActiveChatOut)}, name="ActiveChatsAnswer")
RatingAnswer = answer("RatingAnswer", {"sessionId": always(), "rating": always(Int), "comment": nullable(),
                                       "createdAt": always()}, message=True)
