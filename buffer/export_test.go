package buffer

// SetFreeSpace replaces the free-space probe (tests simulate a full disk).
func SetFreeSpace(o *Options, f func(path string) (uint64, error)) {
	o.diskSpace = func(path string) (uint64, uint64, error) {
		free, err := f(path)
		return free, 1 << 40, err
	}
}

// SetValueThreshold overrides the value-log threshold (benchmarks).
func SetValueThreshold(o *Options, n int64) { o.valueThreshold = n }
