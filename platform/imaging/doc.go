// Package imaging makes thumbnails of uploaded pictures (attachments,
// avatars) safely: only JPEG, PNG and GIF, each through its own decoder;
// the header is read first and images with more pixels than allowed are
// refused before any is decoded (decompression bombs); Exif orientation is
// applied.
package imaging
