"""Everything that touches the tables: schema, migrations, engines, claims, stats, operator actions."""
