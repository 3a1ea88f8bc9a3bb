package broker

func (c *Cluster) resyncSessions() {}

func (c *Cluster) onControl(p []byte) {}
