-- Rooms, their history window, their Yjs documents and their versions.
-- Times are unix microseconds; seqs are the rooms' positions.
CREATE TABLE rooms (
	room         TEXT PRIMARY KEY,
	epoch        TEXT    NOT NULL DEFAULT '', -- '' until the room's stream starts
	seq          INTEGER NOT NULL DEFAULT 0,
	state_seq    INTEGER NOT NULL DEFAULT 0,
	state_data   BLOB,                        -- NULL: no state
	state_bytes  INTEGER NOT NULL DEFAULT 0,
	doc_epoch    TEXT    NOT NULL DEFAULT '', -- '' when there is no document
	doc_seq      INTEGER NOT NULL DEFAULT 0,
	doc_base_seq INTEGER NOT NULL DEFAULT 0,
	doc_base     BLOB,
	doc_bytes    INTEGER NOT NULL DEFAULT 0,  -- base and updates
	updated_at   INTEGER NOT NULL
);

CREATE TABLE messages (
	room    TEXT    NOT NULL,
	seq     INTEGER NOT NULL,
	frame   BLOB,
	exclude TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (room, seq)
);

CREATE TABLE doc_updates (
	room TEXT    NOT NULL,
	seq  INTEGER NOT NULL,
	msg  BLOB,
	PRIMARY KEY (room, seq)
);

-- AUTOINCREMENT: a version's id is never reused after the newest is pruned
-- or its room deleted (ids appear in URLs).
CREATE TABLE versions (
	id    INTEGER PRIMARY KEY AUTOINCREMENT,
	room  TEXT    NOT NULL,
	at    INTEGER NOT NULL,
	kind  TEXT    NOT NULL,
	seq   INTEGER NOT NULL DEFAULT 0,
	data  BLOB,
	bytes INTEGER NOT NULL
);
CREATE INDEX versions_room_id ON versions (room, id);
