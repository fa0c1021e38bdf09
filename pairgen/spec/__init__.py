"""What a build is asked for: choices (enums), frozen configs and their TOML, value checks, the record schema;
and (interrupts) Ctrl-C around the steps that must run whole, for every layer above."""
