//! One module per criu command.
