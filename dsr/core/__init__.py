"""The domain: policy, control table, audit log, masks and strategies, subject ids, coverage, the gate."""
