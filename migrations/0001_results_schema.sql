-- The source of truth for published results.
--
-- Mirrors results-core (record.rs): six subjects per stream, each scored 0-100, the pass mark of
-- 300 in the generated `passed` columns, registration numbers 1000000-9999999. A test in the
-- seeder crate checks that this schema and the Rust definitions agree.

CREATE TYPE stream AS ENUM ('natural_science', 'social_science');

CREATE TABLE regions (
    id   smallint PRIMARY KEY CHECK (id > 0),
    name text NOT NULL UNIQUE CHECK (name <> '')
);

CREATE TABLE schools (
    id        integer PRIMARY KEY CHECK (id > 0),
    name      text NOT NULL CHECK (name <> ''),
    region_id smallint NOT NULL REFERENCES regions (id),
    UNIQUE (region_id, name)
);

CREATE TABLE students (
    id        integer PRIMARY KEY CHECK (id BETWEEN 1000000 AND 9999999),
    full_name text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
    school_id integer NOT NULL REFERENCES schools (id),
    stream    stream NOT NULL,
    -- Lets each stream's results table insist that its students are of that stream.
    UNIQUE (id, stream)
);

-- One row per natural-science student. `total` and `passed` are derived by the database so they
-- can never disagree with the scores.
CREATE TABLE natural_science_results (
    student_id     integer PRIMARY KEY,
    stream         stream NOT NULL DEFAULT 'natural_science' CHECK (stream = 'natural_science'),
    english        smallint NOT NULL CHECK (english BETWEEN 0 AND 100),
    mathematics    smallint NOT NULL CHECK (mathematics BETWEEN 0 AND 100),
    physics        smallint NOT NULL CHECK (physics BETWEEN 0 AND 100),
    chemistry      smallint NOT NULL CHECK (chemistry BETWEEN 0 AND 100),
    biology        smallint NOT NULL CHECK (biology BETWEEN 0 AND 100),
    aptitude       smallint NOT NULL CHECK (aptitude BETWEEN 0 AND 100),
    total          smallint GENERATED ALWAYS AS
                       (english + mathematics + physics + chemistry + biology + aptitude) STORED,
    passed         boolean GENERATED ALWAYS AS
                       (english + mathematics + physics + chemistry + biology + aptitude >= 300) STORED,
    rank_in_stream integer NOT NULL CHECK (rank_in_stream >= 1),
    FOREIGN KEY (student_id, stream) REFERENCES students (id, stream)
);

CREATE TABLE social_science_results (
    student_id     integer PRIMARY KEY,
    stream         stream NOT NULL DEFAULT 'social_science' CHECK (stream = 'social_science'),
    english        smallint NOT NULL CHECK (english BETWEEN 0 AND 100),
    mathematics    smallint NOT NULL CHECK (mathematics BETWEEN 0 AND 100),
    geography      smallint NOT NULL CHECK (geography BETWEEN 0 AND 100),
    history        smallint NOT NULL CHECK (history BETWEEN 0 AND 100),
    economics      smallint NOT NULL CHECK (economics BETWEEN 0 AND 100),
    aptitude       smallint NOT NULL CHECK (aptitude BETWEEN 0 AND 100),
    total          smallint GENERATED ALWAYS AS
                       (english + mathematics + geography + history + economics + aptitude) STORED,
    passed         boolean GENERATED ALWAYS AS
                       (english + mathematics + geography + history + economics + aptitude >= 300) STORED,
    rank_in_stream integer NOT NULL CHECK (rank_in_stream >= 1),
    FOREIGN KEY (student_id, stream) REFERENCES students (id, stream)
);

-- What the tables hold, written by the seeder. A load first sets state 'loading' (committed
-- before any row is copied) and only sets 'complete' once every row and key is in place, so a
-- load killed at any point is recognised and redone by the next run.
CREATE TABLE dataset (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    state             text NOT NULL CHECK (state IN ('loading', 'complete')),
    seed              bigint NOT NULL,
    students          integer NOT NULL CHECK (students > 0),
    generator_version integer NOT NULL,
    fingerprint       text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (state = 'loading' OR fingerprint IS NOT NULL)
);

-- Seeder bookkeeping: the keys of the large tables set aside during a bulk load (rebuilding them
-- afterwards is faster than maintaining them row by row). Saved in the same transaction that
-- drops them, so a load killed at any point can always restore them (see seeder/src/pg.rs).
CREATE TABLE seeder_deferred_constraints (
    table_name text NOT NULL,
    name       text NOT NULL,
    definition text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('p', 'u', 'f')),
    PRIMARY KEY (table_name, name)
);
