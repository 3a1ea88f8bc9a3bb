package config

import (
	"github.com/mcloudtt/mcloudtt/pkg/iotcore"
)

// IoTCore is the Cloud IoT Core compatible mode's configuration (README: "Cloud IoT Core
// compatible mode"). One registry per deployment: its devices' topics (/devices/{device}/...)
// do not name the registry, so devices of two registries with one id would share topics.
type IoTCore struct {
	// IoTCoreEnabled turns the mode on: a client id projects/{project}/locations/{region}/
	// registries/{registry}/devices/{device} names a device, confined to its own topics.
	IoTCoreEnabled bool `envconfig:"IOTCORE" default:"false"`
	// IoTCoreProject is the project of the devices served; required with IOTCORE.
	IoTCoreProject string `envconfig:"IOTCORE_PROJECT"`
	// IoTCoreRegion is their cloud region; empty: any region.
	IoTCoreRegion string `envconfig:"IOTCORE_REGION"`
	// IoTCoreRegistry is their registry; required with IOTCORE.
	IoTCoreRegistry string `envconfig:"IOTCORE_REGISTRY"`
}

// validateIoTCore checks the compatible mode's registry.
func (c Config) validateIoTCore() error {
	if !c.IoTCoreEnabled {
		if c.IoTCoreProject != "" || c.IoTCoreRegion != "" || c.IoTCoreRegistry != "" {
			return bad("IOTCORE", "must be true when IOTCORE_PROJECT, IOTCORE_REGION or IOTCORE_REGISTRY is set")
		}
		return nil
	}
	switch {
	case !iotcore.ValidProject(c.IoTCoreProject):
		return bad("IOTCORE_PROJECT", "required with IOTCORE: a project id (lower-case letters, digits, '-', '.', ':'), got %q", c.IoTCoreProject)
	case c.IoTCoreRegion != "" && !iotcore.ValidRegion(c.IoTCoreRegion):
		return bad("IOTCORE_REGION", "a region (lower-case letters, digits, '-') or empty for any, got %q", c.IoTCoreRegion)
	case !iotcore.ValidName(c.IoTCoreRegistry):
		return bad("IOTCORE_REGISTRY", "required with IOTCORE: a registry id (a letter, then letters, digits, \"-._~%%\"), got %q", c.IoTCoreRegistry)
	}
	return nil
}
