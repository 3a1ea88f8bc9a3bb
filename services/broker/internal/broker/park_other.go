//go:build !linux

package broker

import "errors"

// Without epoll there is no poller: every connection keeps its reader goroutine (see park.go).

type poller struct{}

func connPoller() *poller { return nil }

func (*poller) add(*client) error { return errNoPoller }
func (*poller) arm(*client) error { return errNoPoller }
func (*poller) remove(*client)    {}

var errNoPoller = errors.New("no poller on this platform")
