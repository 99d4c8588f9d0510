"""Marshmallow schemas of the answers of the widget routes and the widget backend's chat routes (`Done` is
re-exported for their deletions)."""
from __future__ import annotations

from marshmallow import Schema, fields
from marshmallow.validate import OneOf

from ..schemas import POSITIONS, PRECHAT_TYPES
from . import Bool, Done, Int, Str, always, answer, many, nested, nullable


# Widgets -----------------------------------------------------------------------------------

class PrechatFieldOut(Schema):
    name = always()
    label = always()
    type = always(validate=OneOf(PRECHAT_TYPES))
    required = always(Bool)
    options = fields.List(Str())


class FaqEntryOut(Schema):
    keywords = fields.List(Str(), required=True)
    answer = always()


class WidgetOut(Schema):
    id = always(Int)
    site_key = always()
    business_name = always()
    widget_title = always()
    welcome_message = always()
    primary_color = always()
    secondary_color = always()
    position = always(validate=OneOf(POSITIONS))
    enable_prechat_form = always(Bool)
    prechat_fields = many(PrechatFieldOut)
    allowed_domains = fields.List(Str(), required=True)
    faq = many(FaqEntryOut)
    created_at = always()
    updated_at = always()
    is_active = always(Bool)


class WidgetStatsOut(Schema):
    total_widgets = always(Int)
    active_widgets = always(Int)
    inactive_widgets = always(Int)
    total_chats = always(Int)
    total_messages = always(Int)
    average_response_time = nullable()
    customer_satisfaction = nullable(fields.Float)


class Pagination(Schema):
    page = always(Int)
    limit = always(Int)
    total = always(Int)


WidgetAnswer = answer("WidgetAnswer", {"widget": nested(WidgetOut)})
WidgetChanged = answer("WidgetChanged", {"widget": nested(WidgetOut)}, message=True)
WidgetsAnswer = answer("WidgetsAnswer", {"widgets": many(WidgetOut), "stats": nested(WidgetStatsOut),
                                         "pagination": nested(Pagination)})
WidgetStatsAnswer = answer("WidgetStatsAnswer", {"stats": nested(WidgetStatsOut)})


class WidgetConfigOut(Schema):
    businessName = always()
    widgetTitle = always()
    welcomeMessage = always()
    primaryColor = always()
    secondaryColor = always()
    position = always(validate=OneOf(POSITIONS))
    enablePrechatForm = always(Bool)
    prechatFields = many(PrechatFieldOut)
    siteKey = always()
    tenantId = always()


# Chat --------------------------------------------------------------------------------------

class VisitorTokenAnswer(Schema):
    token = always()
    expiresIn = always(Int)
    sessionId = always()


class SessionAnswer(Schema):
    success = always(Bool)
    sessionId = always()
    tenantId = always()
    siteKey = nullable()
    status = always()
    aiMode = always(Bool)


class MessageStoredAnswer(Schema):
    success = always(Bool)
    messageId = always()
    sessionId = always()
    seq = always(Int)
    clientMessageId = nullable()
    duplicate = always(Bool)


class Message001(Schema):
    id = always()
    text = always()
    sender = always(validate=OneOf(("user", "agent", "bot", "system")))
    timestamp = always()
    sessionId = always()
    userId = nullable()
    tenantId = always()
    seq = always(Int)


class HistoryAnswer(Schema):
    messages = many(Message001)
    hasMore = always(Bool)
    nextBefore = nullable()


class OnlineUser(Schema):
    userId = nullable()
    sessionId = Str()
    connectedAt = Str()
    domain = Str(allow_none=True)
    origin = Str(allow_none=True)
    url = Str(allow_none=True)


class OnlineUsersAnswer(Schema):
    users = many(OnlineUser)


class Message004(Schema):
    id = always()
    text = always()
    sender = always(validate=OneOf(("customer", "agent")))
    timestamp = always()
    isAI = always(Bool)
    seq = always(Int)


class CustomerInfo(Schema):
    name = nullable()
    email = nullable()
    business = nullable()
    waitingTime = nullable()
    userId = nullable()
    status = always()


class SessionHistoryAnswer(Schema):
    success = always(Bool)
    sessionId = always()
    messages = many(Message004)
    customerInfo = nested(CustomerInfo)
