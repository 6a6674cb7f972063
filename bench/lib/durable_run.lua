-- written by bench/lib/collect_durable.lua (make bench): the last run's durable commits
return {
  machine = "2 CPUs, ext4 file system, kernel 6.18.44-fc-v1147",
  notes = {},
  rounds = 6,
  rows = {
    {
      barriers = "1.00",
      rate = 6661,
      ratio = 1.0,
      source = "commit_rate",
      system = "raw",
      variant = "raw pwrite+fdatasync"
    },
    {
      barriers = "1.00",
      rate = 6578,
      ratio = 0.93,
      source = "commit_rate",
      system = "mappedpages",
      variant = "auto-commit alloc"
    },
    {
      barriers = "1.00",
      rate = 6195,
      ratio = 0.92,
      source = "commit_rate",
      system = "mappedpages",
      variant = "auto-commit free"
    },
    {
      barriers = "1.00",
      rate = 6755,
      ratio = 0.96,
      source = "commit_rate",
      system = "mappedpages",
      variant = "auto-commit set_root"
    },
    {
      barriers = "1.00",
      rate = 6582,
      ratio = 0.91,
      source = "commit_rate",
      system = "mappedpages",
      variant = "txn: begin+10 alloc+commit"
    },
    {
      barriers = "1.00",
      rate = 5210,
      ratio = 0.76,
      source = "commit_rate",
      system = "mappedpages",
      variant = "protected commit (1 page write)"
    },
    {
      barriers = "1.00",
      rate = 7012,
      ratio = 1.01,
      source = "commit_rate",
      system = "mappedpages",
      variant = "auto-commit alloc_protected"
    },
    {
      barriers = "1.00",
      rate = 636,
      ratio = 0.09,
      source = "commit_rate",
      system = "mappedpages",
      variant = "txn: 100 protected page writes"
    },
    {
      barriers = "-",
      rate = 6484,
      ratio = 1.0,
      source = "peer_sqlite",
      system = "raw",
      variant = "raw pwrite 4 KiB + fdatasync"
    },
    {
      barriers = "-",
      rate = 4727,
      ratio = 0.73,
      source = "peer_sqlite",
      system = "SQLite",
      variant = "SQLite WAL, synchronous=FULL, 1-row INSERT"
    },
    {
      barriers = "1.00",
      rate = 5801,
      ratio = 0.93,
      source = "peer_sqlite",
      system = "mappedpages",
      variant = "mappedpages auto-commit alloc"
    },
    {
      barriers = "-",
      rate = 6159,
      ratio = 1.0,
      source = "peer_lmdb",
      system = "raw",
      variant = "raw pwrite 4 KiB + fdatasync"
    },
    {
      barriers = "-",
      rate = 2367,
      ratio = 0.37,
      source = "peer_lmdb",
      system = "LMDB",
      variant = "LMDB, 1 put per txn, default sync"
    },
    {
      barriers = "1.00",
      rate = 6213,
      ratio = 0.97,
      source = "peer_lmdb",
      system = "mappedpages",
      variant = "mappedpages auto-commit alloc"
    }
  },
  seconds = 0.5
}
