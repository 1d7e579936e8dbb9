//! Mount trees: mountinfo parsing, mount namespace dump and restore, external mounts.
