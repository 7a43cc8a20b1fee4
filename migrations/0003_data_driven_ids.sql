-- Registration numbers come from the data (an authority's file or a generated data set's
-- --first-id), not from a fixed seven-digit range: any positive number of up to nine digits
-- (results-core/src/id.rs, StudentId::MAX).
ALTER TABLE students DROP CONSTRAINT students_id_check;
ALTER TABLE students ADD CONSTRAINT students_id_check CHECK (id BETWEEN 1 AND 999999999);

-- The data set records its ID range, and where it came from:
-- - a generated data set: seed, students, generator_version and first_id describe it;
-- - an imported results file (`seeder import`): source_digest is the XXH3-128 of the file's
--   bytes, so the same file again is recognised as already loaded and a changed one is not.
ALTER TABLE dataset
    ADD COLUMN first_id      integer,
    ADD COLUMN last_id       integer,
    ADD COLUMN source_digest text;
-- Every data set loaded before this migration was generated from 1000000 upwards.
UPDATE dataset SET first_id = 1000000, last_id = 1000000 + students - 1;
ALTER TABLE dataset
    ALTER COLUMN first_id SET NOT NULL,
    ALTER COLUMN last_id SET NOT NULL,
    ADD CHECK (first_id BETWEEN 1 AND last_id),
    ADD CHECK (last_id <= 999999999);
