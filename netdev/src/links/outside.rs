//! What the restore is told about devices outside the namespace: `--veth-pair IN=OUT[@BRIDGE]`
//! and `--external veth[IN]:OUT[@BRIDGE]` (the outside end of veth IN is made as OUT in criu's
//! namespace, and enslaved to BRIDGE), `--external macvlan[IN]:OUT` (macvlan IN is made on
//! criu's device OUT), `--external netdev[IN]:OUT` (criu's device OUT is moved in as IN).

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outside {
    /// Inside name: (outside name, bridge).
    pub veth: BTreeMap<String, (String, Option<String>)>,
    /// Inside name: parent device in criu's namespace.
    pub macvlan: BTreeMap<String, String>,
    /// Inside name: a device of criu's namespace to move in.
    pub netdev: BTreeMap<String, String>,
}

impl Outside {
    /// Adds `--veth-pair IN=OUT[@BRIDGE]` (given as IN, OUT[@BRIDGE]).
    pub fn add_veth_pair(&mut self, inside: &str, out: &str) {
        let (name, bridge) = match out.split_once('@') {
            Some((n, b)) => (n, Some(b.to_string())),
            None => (out, None),
        };
        self.veth
            .insert(inside.to_string(), (name.to_string(), bridge));
    }

    /// Takes an `--external` value if it is a veth or macvlan one; false if it is not.
    pub fn add_external(&mut self, value: &str) -> bool {
        let parse = |prefix: &str| {
            let (key, val) = value.strip_prefix(prefix)?.split_once("]:")?;
            (!key.is_empty() && !val.is_empty()).then(|| (key.to_string(), val.to_string()))
        };
        if let Some((key, val)) = parse("veth[") {
            self.add_veth_pair(&key, &val);
            return true;
        }
        if let Some((key, val)) = parse("macvlan[") {
            self.macvlan.insert(key, val);
            return true;
        }
        if let Some((key, val)) = parse("netdev[") {
            self.netdev.insert(key, val);
            return true;
        }
        false
    }

    /// Whether `value` is an `--external` this module takes.
    pub fn is_ours(value: &str) -> bool {
        Outside::default().add_external(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_externals() {
        let mut o = Outside::default();
        o.add_veth_pair("eth0", "host0@br0");
        assert!(o.add_external("veth[eth1]:host1"));
        assert!(o.add_external("macvlan[mv0]:eth9"));
        assert!(!o.add_external("veth[]:x"));
        assert!(!o.add_external("mnt[a]:b"));
        assert!(!o.add_external("veth[eth2]"));
        assert_eq!(o.veth["eth0"], ("host0".into(), Some("br0".into())));
        assert_eq!(o.veth["eth1"], ("host1".into(), None));
        assert_eq!(o.macvlan["mv0"], "eth9");
        assert!(Outside::is_ours("veth[a]:b@c"));
        assert!(o.add_external("netdev[in0]:out0"));
        assert_eq!(o.netdev["in0"], "out0");
    }
}
