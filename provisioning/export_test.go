package provisioning

// SetTestHook installs f as the flow's test hook (see hook); nil removes it.
func SetTestHook(f func(point string)) { testHook = f }
