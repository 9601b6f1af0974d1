//! The hook registry: hooks by name, their callbacks and filters in order.
//!
//! A plugin may subscribe to a hook before the plugin that creates it is
//! loaded, so subscriptions are collected first and bound in [`HookRegistry::bind`]
//! once every plugin is enabled. Binding checks, once, that a callback's
//! payload type has the layout of the hook's payload type; calls after
//! that pass a bare pointer. Callbacks and filters run in ascending
//! priority; equal priorities keep the order of registration.

use plugin_api::abi::{check_layout, FilterBox, HookCallbackBox, HookId, HookKind, TypeLayout};

/// A callback bound to a plain hook.
pub struct Callback {
    pub plugin: String,
    pub priority: i32,
    seq: usize,
    pub callback: HookCallbackBox,
}

/// A filter bound to a filter hook.
pub struct FilterEntry {
    pub plugin: String,
    pub priority: i32,
    seq: usize,
    pub tag: String,
    pub filter: FilterBox,
}

/// A hook and what is bound to it.
pub struct HookDef {
    pub name: String,
    pub kind: HookKind,
    pub owner: String,
    payload: &'static TypeLayout,
    pub callbacks: Vec<Callback>,
    pub filters: Vec<FilterEntry>,
    /// Tags two plugins each gave a filter of this hook, with the
    /// plugins (the one kept first): which of them decodes an object
    /// depends on the order plugins load in.
    pub contested: Vec<(String, String, String)>,
}

enum Pending {
    Callback {
        hook: String,
        payload: &'static TypeLayout,
        entry: Callback,
    },
    Filter {
        hook: String,
        entry: FilterEntry,
    },
}

/// All hooks of this run.
#[derive(Default)]
pub struct HookRegistry {
    hooks: Vec<HookDef>,
    pending: Vec<Pending>,
    seq: usize,
}

impl HookRegistry {
    /// Create a hook; refuses a name already taken.
    pub fn create(
        &mut self,
        name: &str,
        kind: HookKind,
        payload: &'static TypeLayout,
        owner: &str,
    ) -> Result<(), String> {
        if let Some(old) = self.hooks.iter().find(|h| h.name == name) {
            return Err(format!(
                "plugin '{owner}' creates hook '{name}', which plugin '{}' already created; ignored",
                old.owner
            ));
        }
        self.hooks.push(HookDef {
            name: name.to_string(),
            kind,
            owner: owner.to_string(),
            payload,
            callbacks: Vec::new(),
            filters: Vec::new(),
            contested: Vec::new(),
        });
        Ok(())
    }

    fn next_seq(&mut self) -> usize {
        self.seq += 1;
        self.seq
    }

    /// Subscribe a callback to a plain hook (bound later).
    pub fn subscribe(
        &mut self,
        hook: &str,
        priority: i32,
        payload: &'static TypeLayout,
        callback: HookCallbackBox,
        plugin: &str,
    ) {
        let seq = self.next_seq();
        self.pending.push(Pending::Callback {
            hook: hook.to_string(),
            payload,
            entry: Callback {
                plugin: plugin.to_string(),
                priority,
                seq,
                callback,
            },
        });
    }

    /// Add a filter to a filter hook (bound later).
    pub fn add_filter(
        &mut self,
        hook: &str,
        priority: i32,
        tag: &str,
        filter: FilterBox,
        plugin: &str,
    ) {
        let seq = self.next_seq();
        self.pending.push(Pending::Filter {
            hook: hook.to_string(),
            entry: FilterEntry {
                plugin: plugin.to_string(),
                priority,
                seq,
                tag: tag.to_string(),
                filter,
            },
        });
    }

    /// Bind every subscription to its hook. Returns a warning for each
    /// subscription that could not be bound.
    pub fn bind(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            if let Err(w) = self.bind_one(pending) {
                warnings.push(w);
            }
        }
        for hook in &mut self.hooks {
            hook.callbacks.sort_by_key(|c| (c.priority, c.seq));
            hook.filters.sort_by_key(|f| (f.priority, f.seq));
        }
        warnings
    }

    fn bind_one(&mut self, pending: Pending) -> Result<(), String> {
        let (hook_name, plugin) = match &pending {
            Pending::Callback { hook, entry, .. } => (hook.clone(), entry.plugin.clone()),
            Pending::Filter { hook, entry } => (hook.clone(), entry.plugin.clone()),
        };
        let Some(hook) = self.hooks.iter_mut().find(|h| h.name == hook_name) else {
            return Err(format!(
                "plugin '{plugin}' subscribes to hook '{hook_name}', which no loaded plugin creates; ignored"
            ));
        };
        match pending {
            Pending::Callback { payload, entry, .. } => {
                if hook.kind != HookKind::Plain {
                    return Err(format!(
                        "plugin '{plugin}' adds a callback to filter hook '{hook_name}'; ignored"
                    ));
                }
                if let Err(e) = check_layout(hook.payload, payload) {
                    tracing::debug!("payload layout mismatch on hook {hook_name}: {e}");
                    return Err(format!(
                        "plugin '{plugin}' expects another payload type for hook '{hook_name}' \
                         (created by '{}'); callback ignored",
                        hook.owner
                    ));
                }
                hook.callbacks.push(entry);
            }
            Pending::Filter { entry, .. } => {
                if hook.kind != HookKind::Filter {
                    return Err(format!(
                        "plugin '{plugin}' adds a filter to plain hook '{hook_name}'; ignored"
                    ));
                }
                // The repository format's rule for a tag (a stored object's
                // header holds it): refused here, not at the first write;
                // and what breaks it in a header read back is damage.
                if let Some(problem) = obnam_repository::object::tag_problem(entry.tag.as_bytes()) {
                    return Err(format!(
                        "plugin '{plugin}' adds a filter to hook '{hook_name}' with the tag \
                         {:?}, which {problem}; ignored",
                        entry.tag
                    ));
                }
                if let Some(old) = hook.filters.iter().find(|f| f.tag == entry.tag) {
                    hook.contested
                        .push((entry.tag.clone(), old.plugin.clone(), plugin.clone()));
                    return Err(format!(
                        "plugin '{plugin}' adds filter '{}' to hook '{hook_name}', \
                         but plugin '{}' already provides it; ignored",
                        entry.tag, old.plugin
                    ));
                }
                hook.filters.push(entry);
            }
        }
        Ok(())
    }

    /// Find a hook by name and check the caller's payload layout.
    pub fn resolve(&self, name: &str, payload: &'static TypeLayout) -> Result<HookId, String> {
        let (index, hook) = self
            .hooks
            .iter()
            .enumerate()
            .find(|(_, h)| h.name == name)
            .ok_or_else(|| format!("no loaded plugin creates hook '{name}'"))?;
        if hook.kind != HookKind::Plain {
            return Err(format!("hook '{name}' is a filter hook, not a plain one"));
        }
        if let Err(e) = check_layout(hook.payload, payload) {
            tracing::debug!("payload layout mismatch on hook {name}: {e}");
            return Err(format!(
                "the payload type given for hook '{name}' does not match the one plugin '{}' created it with",
                hook.owner
            ));
        }
        Ok(HookId(index as u32))
    }

    /// A hook by handle.
    pub fn get(&self, id: HookId) -> Option<&HookDef> {
        self.hooks.get(id.0 as usize)
    }

    /// A hook by name.
    pub fn by_name(&self, name: &str) -> Option<&HookDef> {
        self.hooks.iter().find(|h| h.name == name)
    }

    /// All hooks.
    pub fn iter(&self) -> impl Iterator<Item = &HookDef> {
        self.hooks.iter()
    }
}
