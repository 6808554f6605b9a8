//! Which files of a folder a command wrote: a small record beside them (e.g.
//! `.unet-lab-predict.json`), so that running the command again into the same folder replaces
//! its own outputs, and never a file it did not write (a ground-truth mask, another command's
//! page, a person's file).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::fs::write_atomic;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// The command that keeps this record.
    written_by: String,
    /// File names in the folder, in sorted order.
    files: BTreeSet<String>,
}

/// The files a command is about to write into a folder, checked against the folder's record;
/// [`Claim::commit`] adds them to the record before the first of them is written.
#[derive(Debug)]
pub(crate) struct Claim {
    record_path: PathBuf,
    record: Record,
}

/// Checks that each of `planned` (file names in `dir`) is either absent or listed in the
/// record `dir/<record>` of `command`. The error is the message for the person: it names the
/// first such file and `flag`, the option that chose `dir`.
pub(crate) fn claim(
    dir: &Path,
    record: &str,
    command: &str,
    flag: &str,
    planned: &[String],
) -> Result<Claim, String> {
    let record_path = dir.join(record);
    let mut kept = match std::fs::read(&record_path) {
        Ok(bytes) => serde_json::from_slice::<Record>(&bytes).map_err(|e| {
            format!(
                "{flag}: {} is not a record unet-lab wrote ({e}); it lists the files that \
                 `unet-lab {command}` may replace there: remove it only if none of that folder's \
                 files matter",
                record_path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Record::default(),
        Err(e) => {
            return Err(format!(
                "{flag}: cannot read {}: {e}",
                record_path.display()
            ));
        }
    };
    if let Some(foreign) = planned
        .iter()
        .find(|name| !kept.files.contains(*name) && dir.join(name).symlink_metadata().is_ok())
    {
        return Err(format!(
            "{flag}: {} exists and was not written by `unet-lab {command}` (it is not listed in \
             {record}); nothing was overwritten or written: choose another {flag}, or move that \
             file away",
            dir.join(foreign).display()
        ));
    }
    kept.written_by = format!("unet-lab {command}");
    kept.files.extend(planned.iter().cloned());
    Ok(Claim {
        record_path,
        record: kept,
    })
}

impl Claim {
    /// Writes the record (creating the folder): from here on, the planned files are the
    /// command's own, and a run cut short can be run again into the same folder.
    pub(crate) fn commit(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.record).context("cannot encode the record")?;
        write_atomic(&self.record_path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_may_replace_its_own_files_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("unet-lab-owned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("truth.png"), b"label").unwrap();
        let planned = vec!["a.png".to_string()];
        claim(&dir, ".rec.json", "predict", "--out", &planned)
            .unwrap()
            .commit()
            .unwrap();
        std::fs::write(dir.join("a.png"), b"mine").unwrap();
        // Its own file again, and a new one: allowed, and both are then recorded.
        let more = vec!["a.png".to_string(), "b.png".to_string()];
        claim(&dir, ".rec.json", "predict", "--out", &more)
            .unwrap()
            .commit()
            .unwrap();
        let err = claim(&dir, ".rec.json", "predict", "--out", &["truth.png".into()]).unwrap_err();
        assert!(
            err.starts_with("--out: ") && err.contains("truth.png exists"),
            "{err}"
        );
        std::fs::write(dir.join(".rec.json"), b"{").unwrap();
        assert!(claim(&dir, ".rec.json", "predict", "--out", &planned).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
