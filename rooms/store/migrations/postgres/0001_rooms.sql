-- Rooms, their history window, their Yjs documents and their versions.
-- Times are unix microseconds; seqs are the rooms' positions. Room names
-- sort bytewise (COLLATE "C"), as on SQLite, so Rooms pages the same way.
CREATE TABLE rooms (
	room         text COLLATE "C" PRIMARY KEY,
	epoch        text   NOT NULL DEFAULT '', -- '' until the room's stream starts
	seq          bigint NOT NULL DEFAULT 0,
	state_seq    bigint NOT NULL DEFAULT 0,
	state_data   bytea,                      -- NULL: no state
	state_bytes  bigint NOT NULL DEFAULT 0,
	doc_epoch    text   NOT NULL DEFAULT '', -- '' when there is no document
	doc_seq      bigint NOT NULL DEFAULT 0,
	doc_base_seq bigint NOT NULL DEFAULT 0,
	doc_base     bytea,
	doc_bytes    bigint NOT NULL DEFAULT 0,  -- base and updates
	updated_at   bigint NOT NULL
);

CREATE TABLE messages (
	room    text COLLATE "C" NOT NULL,
	seq     bigint NOT NULL,
	frame   bytea,
	exclude text   NOT NULL DEFAULT '',
	PRIMARY KEY (room, seq)
);

CREATE TABLE doc_updates (
	room text COLLATE "C" NOT NULL,
	seq  bigint NOT NULL,
	msg  bytea,
	PRIMARY KEY (room, seq)
);

CREATE TABLE versions (
	id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	room  text COLLATE "C" NOT NULL,
	at    bigint NOT NULL,
	kind  text   NOT NULL,
	seq   bigint NOT NULL DEFAULT 0,
	data  bytea,
	bytes bigint NOT NULL
);
CREATE INDEX versions_room_id ON versions (room, id);
