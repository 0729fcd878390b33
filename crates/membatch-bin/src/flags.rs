//! The library's settings as flags: one clap argument per row of
//! [`membatch::settings`], applied over what
//! [`ConfigBuilder::from_env`](membatch::ConfigBuilder::from_env) read, so
//! each setting has one parser (the table's) whether it comes from the
//! environment or the command line.

use std::marker::PhantomData;

use clap::{Arg, ArgMatches, Command};
use membatch::settings::{self, Group, Setting};
use membatch::ConfigBuilder;

/// Which groups of settings a program takes as flags.
pub trait Groups {
    /// The groups.
    const GROUPS: &'static [Group];
    /// Settings of those groups the program names otherwise.
    const EXCEPT: &'static [&'static str] = &[];
}

/// Every setting: a program that runs a service.
#[derive(Debug, Clone, Copy)]
pub struct AllGroups;
impl Groups for AllGroups {
    const GROUPS: &'static [Group] =
        &[Group::Model, Group::Memory, Group::Batching, Group::Service];
}

/// The model, the memory budget and batching: a program that embeds
/// without a service.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingGroups;
impl Groups for EmbeddingGroups {
    const GROUPS: &'static [Group] = &[Group::Model, Group::Memory, Group::Batching];
}

/// The memory budget alone.
#[derive(Debug, Clone, Copy)]
pub struct MemoryGroup;
impl Groups for MemoryGroup {
    const GROUPS: &'static [Group] = &[Group::Memory];
}

/// The settings given as flags, for a program's arguments
/// (`#[command(flatten)] settings: Settings<AllGroups>`).
#[derive(Debug, Clone)]
pub struct Settings<G> {
    given: Vec<(&'static Setting, String)>,
    groups: PhantomData<G>,
}

impl<G: Groups> Settings<G> {
    fn selected() -> impl Iterator<Item = &'static Setting> {
        settings::all().iter().filter(|s| {
            G::GROUPS.contains(&s.group()) && s.flag().is_some() && !G::EXCEPT.contains(&s.name())
        })
    }

    /// The flags given, over `builder`.
    ///
    /// # Errors
    ///
    /// [`membatch::Error::InvalidConfig`] naming the flag.
    pub fn apply(&self, mut builder: ConfigBuilder) -> membatch::Result<ConfigBuilder> {
        for (setting, value) in &self.given {
            let flag = format!("--{}", setting.flag().unwrap_or(setting.name()));
            builder = builder.set(setting, value, &flag)?;
        }
        Ok(builder)
    }

    /// The environment's settings ([`ConfigBuilder::from_env`]) with the
    /// flags over them, not yet built: a program may set more, and the
    /// checks of combinations run once, on both.
    ///
    /// # Errors
    ///
    /// [`membatch::Error::InvalidConfig`] naming the variable or flag.
    pub fn builder(&self) -> membatch::Result<ConfigBuilder> {
        self.apply(ConfigBuilder::from_env()?)
    }

    /// The value given for the setting `name`, if its flag was given.
    pub fn given(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .find(|(s, _)| s.name() == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<G: Groups> clap::FromArgMatches for Settings<G> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = Self::selected()
            .filter_map(|s| matches.get_one::<String>(s.name()).map(|v| (s, v.clone())))
            .collect();
        Ok(Settings {
            given,
            groups: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl<G: Groups> clap::Args for Settings<G> {
    fn augment_args(mut cmd: Command) -> Command {
        for s in Self::selected() {
            let flag = s.flag().unwrap_or(s.name());
            let mut arg = Arg::new(s.name())
                .long(flag)
                .value_name(s.value_name())
                .help(format!(
                    "{} [env: {}] [default: {}]",
                    s.help().trim_end_matches('.'),
                    s.env(),
                    s.default_text()
                ))
                .help_heading("Settings (docs/configuration.md)")
                .global(true)
                .value_parser(move |v: &str| {
                    s.check(v, flag)
                        .map(|()| v.to_string())
                        .map_err(crate::reason)
                });
            match s.name() {
                // membatch-sql's earlier name for it.
                "max_memory" => arg = arg.alias("memory-limit"),
                // What a server calls it: the prompt of a request that
                // names none (docs/server.md).
                "prompt_name" => arg = arg.alias("default-prompt-name"),
                _ => {}
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use membatch::Config;

    #[derive(Parser, Debug)]
    struct Tool {
        #[command(flatten)]
        settings: Settings<EmbeddingGroups>,
    }

    #[test]
    fn every_selected_setting_is_a_flag_and_reaches_the_config() {
        let tool = Tool::try_parse_from([
            "tool",
            "--max-batch-size",
            "16",
            "--memory-budget",
            "300MiB",
            "--threads",
            "2",
        ])
        .unwrap();
        let config = tool
            .settings
            .apply(Config::builder())
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.batch().max_batch_size(), 16);
        assert_eq!(config.memory().max_bytes(), Some(300 << 20));
        assert_eq!(config.model().threads, Some(2));
        assert_eq!(tool.settings.given("threads"), Some("2"));
        let flags: Vec<String> = Tool::command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        for s in settings::all() {
            let wanted = s.group() != Group::Service && s.flag().is_some();
            let flag = s.flag().unwrap_or(s.name()).to_string();
            assert_eq!(flags.contains(&flag), wanted, "--{flag}");
        }
    }

    #[test]
    fn a_bad_value_is_an_argument_error_naming_the_flag() {
        let e = Tool::try_parse_from(["tool", "--threads", "0"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        let text = e.to_string();
        assert!(
            text.contains("--threads") && text.contains("at least"),
            "{text}"
        );
        let e = Tool::try_parse_from(["tool", "--min-batch-size", "65"])
            .unwrap()
            .settings
            .apply(Config::builder())
            .unwrap()
            .build()
            .unwrap_err();
        assert!(
            matches!(&e, membatch::Error::InvalidConfig { name, .. } if name == "--min-batch-size"),
            "{e}"
        );
    }

    #[test]
    fn memory_limit_is_an_alias_of_memory_budget() {
        let tool = Tool::try_parse_from(["tool", "--memory-limit", "40%"]).unwrap();
        assert_eq!(tool.settings.given("max_memory"), Some("40%"));
    }
}
