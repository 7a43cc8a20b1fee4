-- The second factor (results-core/src/factor.rs): a data set may require, besides the
-- registration number, a detail of the student's admission slip. PostgreSQL holds only its keyed
-- hash (HMAC-SHA-256 under the FACTOR_KEY secret, 16 bytes), never the detail itself.
ALTER TABLE students
    ADD COLUMN factor_hash bytea CHECK (factor_hash IS NULL OR length(factor_hash) = 16);

-- Which detail the data set requires ('pin' or 'date_of_birth'); NULL: an open data set, as every
-- data set loaded before this migration is.
ALTER TABLE dataset
    ADD COLUMN factor text CHECK (factor IN ('pin', 'date_of_birth'));
