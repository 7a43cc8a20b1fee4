-- Corrections after appeals (`seeder correct`, seeder/src/correct.rs).
--
-- A correction changes subject scores and the ranks it shifts in ONE transaction, which also
-- records every student whose stored result changed in `pending_publication`. The seeder then
-- writes those results to Redis and only afterwards deletes their pending rows, so a Redis that
-- is down or fails midway leaves a durable list of what Redis still lacks (`seeder publish`
-- and `seeder verify` read it).

-- One row per applied correction file: the audit journal.
CREATE TABLE corrections (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    applied_at        timestamptz NOT NULL DEFAULT now(),
    file_name         text NOT NULL,
    file_rows         integer NOT NULL CHECK (file_rows >= 0),
    changed_scores    integer NOT NULL CHECK (changed_scores > 0),
    -- Students whose stored result changed: their scores, or their rank moved by the new totals.
    affected_students integer NOT NULL CHECK (affected_students > 0),
    -- The data set's content checksum after this correction (dataset.fingerprint is set to it).
    fingerprint       text NOT NULL,
    -- Set when a forced reload regenerated the data set and so dropped this correction.
    discarded_at      timestamptz
);

-- Every score a correction changed, with its previous value.
CREATE TABLE correction_changes (
    correction_id bigint NOT NULL REFERENCES corrections (id),
    student_id    integer NOT NULL,
    subject       text NOT NULL,
    old_score     smallint NOT NULL CHECK (old_score BETWEEN 0 AND 100),
    new_score     smallint NOT NULL CHECK (new_score BETWEEN 0 AND 100),
    PRIMARY KEY (correction_id, student_id, subject)
);

-- Students whose result in PostgreSQL is newer than the one in Redis.
CREATE TABLE pending_publication (
    student_id    integer PRIMARY KEY,
    -- The latest correction that changed this student's result.
    correction_id bigint NOT NULL REFERENCES corrections (id),
    since         timestamptz NOT NULL DEFAULT now()
);
