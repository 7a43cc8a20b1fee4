//! Where a data set comes from: generated from a seed, or imported from an authority's results
//! file. PostgreSQL's `dataset` row and Redis' completeness marker both record it, so a rerun
//! knows whether the stores already hold what it was asked to load.

use results_core::{CODEC_VERSION, DatasetSpec, FACTOR_CODEC_VERSION, FactorKind, GENERATOR_VERSION};

/// What an imported file was: enough to recognise it again and to describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOrigin {
    /// XXH3-128 of the file's bytes, hex: the same file again has the same digest.
    pub digest: String,
    /// Students (rows) in the file.
    pub students: u32,
    /// The smallest registration number in the file.
    pub first_id: u32,
    /// The largest registration number in the file.
    pub last_id: u32,
    /// The second factor the file's students carry (its column), if any.
    pub factor: Option<FactorKind>,
}

/// What a load puts into the stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The deterministic generator's data set, with generated PINs when asked
    /// (`seeder load --factor pin`).
    Generated(DatasetSpec, Option<FactorKind>),
    /// An imported results file (`seeder import`).
    File(FileOrigin),
}

impl Origin {
    /// Generator seed; 0 for a file.
    pub fn seed(&self) -> u64 {
        match self {
            Origin::Generated(spec, _) => spec.seed(),
            Origin::File(_) => 0,
        }
    }

    /// Generator version; 0 for a file (its content does not depend on the generator).
    pub fn generator(&self) -> u32 {
        match self {
            Origin::Generated(..) => GENERATOR_VERSION,
            Origin::File(_) => 0,
        }
    }

    /// Number of students.
    pub fn students(&self) -> u32 {
        match self {
            Origin::Generated(spec, _) => spec.students(),
            Origin::File(file) => file.students,
        }
    }

    /// The smallest and largest registration numbers.
    pub fn id_range(&self) -> (u32, u32) {
        match self {
            Origin::Generated(spec, _) => (*spec.ids().start(), *spec.ids().end()),
            Origin::File(file) => (file.first_id, file.last_id),
        }
    }

    /// The file digest, for an imported file.
    pub fn digest(&self) -> Option<&str> {
        match self {
            Origin::Generated(..) => None,
            Origin::File(file) => Some(&file.digest),
        }
    }

    /// The second factor every lookup must present, if any.
    pub fn factor(&self) -> Option<FactorKind> {
        match self {
            Origin::Generated(_, factor) => *factor,
            Origin::File(file) => file.factor,
        }
    }

    /// The codec version of the data set's stored results (and of its marker).
    pub fn codec(&self) -> u8 {
        if self.factor().is_some() { FACTOR_CODEC_VERSION } else { CODEC_VERSION }
    }

    /// One phrase for messages, e.g. "seed 2026, 674823 students (IDs 1000000..1674822)".
    pub fn describe(&self) -> String {
        let (first, last) = self.id_range();
        match self {
            Origin::Generated(spec, _) => format!(
                "the generated data set of seed {}, {} students (IDs {first}..{last}), generator v{}{}",
                spec.seed(),
                spec.students(),
                GENERATOR_VERSION,
                factor_phrase(self.factor())
            ),
            Origin::File(file) => format!(
                "an imported results file of {} students (IDs {first}..{last}, file digest {}){}",
                file.students,
                file.digest,
                factor_phrase(file.factor)
            ),
        }
    }
}

/// ", requiring the pin" or nothing, for descriptions.
pub fn factor_phrase(factor: Option<FactorKind>) -> String {
    factor.map(|kind| format!(", requiring the {}", kind.as_str())).unwrap_or_default()
}
