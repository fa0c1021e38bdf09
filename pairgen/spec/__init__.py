"""What a build is asked for: choices (enums), frozen configs and their TOML, value checks, the record schema."""
