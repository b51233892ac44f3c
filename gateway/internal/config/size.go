package config

import "github.com/ferrygw/ferry/pipeline/datasize"

// Size is a number of bytes written with a unit ("8MiB"); see datasize.
type Size = datasize.Size

// Common sizes.
const (
	KiB = datasize.KiB
	MiB = datasize.MiB
	GiB = datasize.GiB
	TiB = datasize.TiB
)
