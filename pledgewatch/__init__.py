"""pledgewatch: provable in-loan monitoring of pledged warehouse stock (shared core)."""
