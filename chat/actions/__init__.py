"""Every change to the data: one transaction, its history entries, then a publish after commit."""
