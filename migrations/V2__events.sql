-- Each channel's recent events (status changes, failed sign-ins), as the store's other tables:
-- key = the channel id's 16 bytes and the event's time, value = the encoded event.
CREATE TABLE events (key bytea PRIMARY KEY, value bytea NOT NULL);
