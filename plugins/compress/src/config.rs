//! The settings `compress-with` and `compress-level`, read and checked.
//!
//! They are checked apart from the filters so that the backup can refuse a
//! bad level when it starts, before anything is written, and so that the
//! rules (which levels each codec accepts, what an unset level means) can
//! be tested without a host. They say only how new objects are written:
//! reading never looks at them, because each stored object's tag says how
//! to undo its compression.

use crate::codec::Codec;

/// The setting that picks the codec.
pub const WITH: &str = "compress-with";
/// The setting that picks the level.
pub const LEVEL: &str = "compress-level";
/// The values of `compress-with`.
pub const CHOICES: [&str; 3] = ["none", "zstd", "deflate"];
/// The default of `compress-with`.
pub const DEFAULT: &str = "zstd";

/// Why the settings make no plan: the setting whose value is bad, and
/// what is wrong with it (the caller says where the value came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub setting: &'static str,
    pub reason: String,
}

/// How this run compresses the objects it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `None` for `compress-with none`: nothing is compressed.
    pub codec: Option<Codec>,
    /// The level to compress at; meaningless without a codec.
    pub level: i32,
}

impl Plan {
    /// The plan for the two settings' values, as text; `None` where unset.
    pub fn new(with: Option<&str>, level: Option<&str>) -> Result<Plan, PlanError> {
        let codec = match with.unwrap_or(DEFAULT) {
            "none" => None,
            "zstd" => Some(Codec::Zstd),
            "deflate" => Some(Codec::Deflate),
            other => {
                return Err(PlanError {
                    setting: WITH,
                    reason: format!("'{other}' is not one of: {}", CHOICES.join(", ")),
                })
            }
        };
        let bad_level = |reason: String| PlanError {
            setting: LEVEL,
            reason,
        };
        let level = level.map(str::trim);
        // Wide enough that a long number is out of range, not "not an
        // integer".
        let number = |text: &str| {
            text.parse::<i128>()
                .map_err(|_| bad_level(format!("'{text}' is not an integer")))
        };
        let Some(codec) = codec else {
            // A level means nothing without a codec, but a typo is still
            // worth pointing out.
            if let Some(text) = level {
                number(text)?;
            }
            return Ok(Plan { codec, level: 0 });
        };
        let range = codec.levels();
        let level = match level {
            None => codec.default_level(),
            Some(text) => {
                let n = number(text)?;
                i32::try_from(n)
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        bad_level(format!(
                            "'{text}' is out of range for {}: give {} to {} (unset: {})",
                            codec.tag(),
                            range.start(),
                            range.end(),
                            codec.default_level()
                        ))
                    })?
            }
        };
        Ok(Plan {
            codec: Some(codec),
            level,
        })
    }

    /// The plan the run's settings ask for; an error names the setting
    /// and where its value came from.
    pub fn from_settings(ctx: &plugin_api::Context<'_>) -> plugin_api::Result<Plan> {
        let with = ctx.string(WITH)?;
        let level = ctx.string(LEVEL)?;
        Plan::new(with.as_deref(), level.as_deref())
            .map_err(|e| ctx.setting_error(e.setting, &e.reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan, or the error as the command line's would read.
    fn plan(with: Option<&str>, level: Option<&str>) -> Result<Plan, String> {
        Plan::new(with, level).map_err(|e| format!("--{}: {}", e.setting, e.reason))
    }

    #[test]
    fn defaults_are_zstd_at_level_1() {
        let zstd = Some(Codec::Zstd);
        assert_eq!(
            plan(None, None),
            Ok(Plan {
                codec: zstd,
                level: 1
            })
        );
        assert_eq!(
            plan(Some("zstd"), None),
            Ok(Plan {
                codec: zstd,
                level: 1
            })
        );
        assert_eq!(
            plan(Some("deflate"), None),
            Ok(Plan {
                codec: Some(Codec::Deflate),
                level: 6
            })
        );
        assert_eq!(plan(Some("none"), None).unwrap().codec, None);
    }

    #[test]
    fn levels_within_each_codecs_range_are_taken() {
        let min = *zstd::compression_level_range().start();
        assert!(min < -1000, "zstd's fast levels reach {min}");
        for (with, level) in [
            ("zstd", min),
            ("zstd", -1),
            ("zstd", 0),
            ("zstd", 19),
            ("zstd", 22),
            ("deflate", 0),
            ("deflate", 9),
        ] {
            let got = plan(Some(with), Some(&level.to_string())).unwrap();
            assert_eq!(got.level, level, "{with} {level}");
            assert_eq!(got.codec.unwrap().tag(), with);
        }
        assert_eq!(plan(None, Some(" -7 ")).unwrap().level, -7);
    }

    #[test]
    fn bad_levels_name_the_setting_and_the_range() {
        let min = *zstd::compression_level_range().start();
        for (with, level) in [
            ("zstd", "23"),
            ("zstd", &(i64::from(min) - 1).to_string()),
            ("zstd", "99999999999999999999"),
            ("deflate", "10"),
            ("deflate", "-1"),
        ] {
            let err = plan(Some(with), Some(level)).unwrap_err();
            let range = if with == "zstd" {
                format!("{min} to 22 (unset: 1)")
            } else {
                "0 to 9 (unset: 6)".to_string()
            };
            assert_eq!(
                err,
                format!("--compress-level: '{level}' is out of range for {with}: give {range}")
            );
        }
        for level in ["fast", "", "3.5"] {
            assert_eq!(
                plan(Some("zstd"), Some(level)).unwrap_err(),
                format!("--compress-level: '{level}' is not an integer")
            );
        }
    }

    #[test]
    fn with_none_a_level_must_still_be_a_number() {
        assert!(plan(Some("none"), Some("99")).is_ok());
        assert_eq!(
            plan(Some("none"), Some("max")).unwrap_err(),
            "--compress-level: 'max' is not an integer"
        );
    }

    #[test]
    fn an_unknown_codec_is_refused() {
        assert_eq!(
            plan(Some("lz4"), None).unwrap_err(),
            "--compress-with: 'lz4' is not one of: none, zstd, deflate"
        );
    }
}
