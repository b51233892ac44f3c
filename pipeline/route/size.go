package route

import "github.com/ferrygw/ferry/pipeline/datasize"

// Size is a number of bytes written with a unit, as in the gateway's config ("10GiB").
type Size = datasize.Size
