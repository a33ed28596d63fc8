-- Webhook events waiting to be delivered by an instance without Redis
-- (rooms/webhook): id is the event's key in the queue, due unix ms,
-- record the queue's record of the event.
CREATE TABLE webhook_events (
	id     INTEGER PRIMARY KEY,
	room   TEXT    NOT NULL,
	due    INTEGER NOT NULL,
	record BLOB    NOT NULL
);
