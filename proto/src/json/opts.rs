//! CRIU's custom field options (`[(criu).hex = true]` and friends) that steer crit's JSON.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost_reflect::{FieldDescriptor, Value};

use crate::pool;

/// The crit options of one field; all unset for most fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldOpts {
    pub hex: bool,
    pub ipadd: bool,
    pub flags: Option<String>,
    pub dev: bool,
    pub odev: bool,
    pub dict: Option<String>,
    pub conv: Option<String>,
}

static NONE: FieldOpts = FieldOpts {
    hex: false,
    ipadd: false,
    flags: None,
    dev: false,
    odev: false,
    dict: None,
    conv: None,
};

/// The options of a field (by its full name), read once from the descriptor pool.
pub fn field_opts(field: &FieldDescriptor) -> &'static FieldOpts {
    static TABLE: OnceLock<HashMap<String, FieldOpts>> = OnceLock::new();
    TABLE
        .get_or_init(build_table)
        .get(field.full_name())
        .unwrap_or(&NONE)
}

fn build_table() -> HashMap<String, FieldOpts> {
    let mut table = HashMap::new();
    let Some(ext) = pool().get_extension_by_name("criu.criu") else {
        return table;
    };
    for message in pool().all_messages() {
        for field in message.fields() {
            let options = field.options();
            if !options.has_extension(&ext) {
                continue;
            }
            if let Value::Message(opts) = options.get_extension(&ext).as_ref() {
                let flag = |name: &str| {
                    opts.get_field_by_name(name)
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false)
                };
                let text = |name: &str| {
                    if opts.has_field_by_name(name) {
                        opts.get_field_by_name(name)
                            .and_then(|v| v.as_str().map(str::to_string))
                    } else {
                        None
                    }
                };
                let parsed = FieldOpts {
                    hex: flag("hex"),
                    ipadd: flag("ipadd"),
                    flags: text("flags"),
                    dev: flag("dev"),
                    odev: flag("odev"),
                    dict: text("dict"),
                    conv: text("conv"),
                };
                table.insert(field.full_name().to_string(), parsed);
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message_descriptor;

    #[test]
    fn reads_custom_options() {
        let vma = message_descriptor("vma_entry").unwrap();
        assert!(field_opts(&vma.get_field_by_name("start").unwrap()).hex);
        assert_eq!(
            field_opts(&vma.get_field_by_name("prot").unwrap())
                .flags
                .as_deref(),
            Some("mmap.prot")
        );
        assert_eq!(
            field_opts(&vma.get_field_by_name("pgoff").unwrap()),
            &FieldOpts::default()
        );
        let tc = message_descriptor("task_core_entry").unwrap();
        assert_eq!(
            field_opts(&tc.get_field_by_name("task_state").unwrap())
                .dict
                .as_deref(),
            Some("gen")
        );
    }
}
