//! The names of the top level of a mount: one directory per generation,
//! and `latest`.
//!
//! A generation's directory is named by its start time (UTC, to the
//! millisecond) and its id: `2025-01-31T12-34-56.789Z_0123456789abcdef`,
//! with `_checkpoint` appended for a checkpoint. A checkpoint is named by
//! the time it was committed instead: the checkpoints of one run share
//! its start time, and would sort by their random ids. The time comes first so
//! that `ls` lists generations oldest first; to the millisecond, because
//! two backups of one client easily start in the same second (a small
//! tree backs up in less), and the id after the time would then order
//! them at random. The id keeps names unique and says which generation
//! it is for the other commands (`restore --generation ID`). The time has
//! no colons: a colon in a file name upsets `scp`, `rsync` and file
//! sharing with other systems.
//!
//! `latest` is a symbolic link to the newest generation's directory,
//! checkpoints included, as `--generation latest` means for restore: a
//! checkpoint is committed data, and when it is the newest thing a
//! client has, it is the newest data there is. A symlink rather than a
//! second copy of the directory, so that `ls -l` shows which generation
//! it is and every file has one inode number, whichever way it is
//! reached.

use plugin_api::GenerationInfo;

/// The name of the symlink to the newest generation.
pub const LATEST: &str = "latest";

/// The directory name of a generation.
pub fn generation_dir(gen: &GenerationInfo) -> String {
    let when = if gen.is_checkpoint {
        gen.ended_ns
    } else {
        gen.started_ns
    };
    let millis = when.div_euclid(1_000_000);
    let time = match jiff::Timestamp::from_millisecond(millis) {
        Ok(t) => t.strftime("%Y-%m-%dT%H-%M-%S%.3fZ").to_string(),
        Err(_) => format!("{millis}"),
    };
    // Ids are hex today; a repository written by something else must
    // still not make a name with a slash (a path) or a NUL (no name).
    let id: String = gen
        .id
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    let mut name = format!("{time}_{id}");
    if gen.is_checkpoint {
        name.push_str("_checkpoint");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(id: &str, started_ns: i64, checkpoint: bool) -> GenerationInfo {
        GenerationInfo {
            id: id.into(),
            client: "c".into(),
            started_ns,
            ended_ns: started_ns,
            file_count: 0,
            data_size: 0,
            is_checkpoint: checkpoint,
        }
    }

    #[test]
    fn names_are_utc_start_time_then_id() {
        let g = gen("0123456789abcdef", 1_700_000_000_123_456_789, false);
        assert_eq!(
            generation_dir(&g),
            "2023-11-14T22-13-20.123Z_0123456789abcdef"
        );
    }

    #[test]
    fn checkpoints_say_so() {
        let g = gen("ab", 0, true);
        assert_eq!(generation_dir(&g), "1970-01-01T00-00-00.000Z_ab_checkpoint");
    }

    #[test]
    fn checkpoints_of_one_run_sort_in_the_order_they_were_made() {
        let mut first = gen("ff", 1_000_000_000, true);
        let mut second = gen("00", 1_000_000_000, true);
        first.ended_ns = 2_000_000_000;
        second.ended_ns = 3_000_000_000;
        assert!(generation_dir(&first) < generation_dir(&second));
        assert_eq!(
            generation_dir(&second),
            "1970-01-01T00-00-03.000Z_00_checkpoint"
        );
    }

    #[test]
    fn times_before_1970_round_down() {
        let g = gen("ab", -1, false);
        assert_eq!(generation_dir(&g), "1969-12-31T23-59-59.999Z_ab");
    }

    #[test]
    fn odd_ids_never_make_paths() {
        let g = gen("../x\0y", 0, false);
        let name = generation_dir(&g);
        assert!(!name.contains('/') && !name.contains('\0'), "{name}");
    }

    #[test]
    fn names_sort_by_start_time() {
        let a = generation_dir(&gen("ffff", 1_000_000_000_000_000_000, false));
        let b = generation_dir(&gen("0000", 1_600_000_000_000_000_000, false));
        assert!(a < b);
        // Two backups started in the same second, the later one's id
        // sorting first.
        let first = generation_dir(&gen("ffff", 1_700_000_000_120_000_000, false));
        let second = generation_dir(&gen("0000", 1_700_000_000_480_000_000, false));
        assert!(first < second, "{first} {second}");
    }
}
