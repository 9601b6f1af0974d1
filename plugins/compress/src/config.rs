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
    pub fn new(with: Option<&str>, level: Option<&str>) -> Result<Plan, String> {
        let codec = match with.unwrap_or(DEFAULT) {
            "none" => None,
            "zstd" => Some(Codec::Zstd),
            "deflate" => Some(Codec::Deflate),
            other => {
                return Err(format!(
                    "--{WITH}: '{other}' is not one of: {}",
                    CHOICES.join(", ")
                ))
            }
        };
        let level = level.map(str::trim);
        let Some(codec) = codec else {
            // A level means nothing without a codec, but a typo is still
            // worth pointing out.
            if let Some(text) = level {
                if text.parse::<i64>().is_err() {
                    return Err(format!("--{LEVEL} must be an integer, not '{text}'"));
                }
            }
            return Ok(Plan { codec, level: 0 });
        };
        let range = codec.levels();
        let accepted = format!(
            "an integer from {} to {} for --{WITH} {} (unset: {})",
            range.start(),
            range.end(),
            codec.tag(),
            codec.default_level()
        );
        let level = match level {
            None => codec.default_level(),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| range.contains(n))
                .ok_or_else(|| format!("--{LEVEL} must be {accepted}, not '{text}'"))?,
        };
        Ok(Plan {
            codec: Some(codec),
            level,
        })
    }

    /// The plan the run's settings ask for.
    pub fn from_settings(ctx: &plugin_api::Context<'_>) -> plugin_api::Result<Plan> {
        let with = ctx.string(WITH)?;
        let level = ctx.string(LEVEL)?;
        Plan::new(with.as_deref(), level.as_deref()).map_err(plugin_api::Error::msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(with: Option<&str>, level: Option<&str>) -> Result<Plan, String> {
        Plan::new(with, level)
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
            ("zstd", "fast"),
            ("zstd", ""),
            ("zstd", "3.5"),
            ("deflate", "10"),
            ("deflate", "-1"),
        ] {
            let err = plan(Some(with), Some(level)).unwrap_err();
            let range = if with == "zstd" {
                format!("from {min} to 22 for --compress-with zstd (unset: 1)")
            } else {
                "from 0 to 9 for --compress-with deflate (unset: 6)".to_string()
            };
            assert_eq!(
                err,
                format!("--compress-level must be an integer {range}, not '{level}'")
            );
        }
    }

    #[test]
    fn with_none_a_level_must_still_be_a_number() {
        assert!(plan(Some("none"), Some("99")).is_ok());
        assert_eq!(
            plan(Some("none"), Some("max")).unwrap_err(),
            "--compress-level must be an integer, not 'max'"
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
