// libmsg: the messages of the libraries we call (GLib and libvips, and
// libpng and libtiff through libvips; libjpeg through jpeg.c), put in our
// "tool: where: warning: what" form instead of GLib's own
// "(process:123): VIPS-WARNING **: 11:42:27.481: ..." lines.
//
// A tool that decodes files captures the messages of each file on the
// thread that decodes it and reports them with the file's name, once per
// distinct text with a count (libvips parses a PNG's header several times
// per file and warns each time).  Messages outside a capture are printed at
// once, naming the library.  Warnings are silenced by libmsg_set_quiet
// (a tool's -q); GLib's criticals and errors never are.  A message that
// means the pixels are damaged is not a warning here: the decoders refuse
// such a file (image.c loads with fail_on=error, jpeg.c fails on corrupt
// data), so it reaches the user as the file's error.
#ifndef MEDSSL_LIBMSG_H
#define MEDSSL_LIBMSG_H

#include <stdbool.h>

typedef struct {
    char *text;   // owned
    int count;    // how many times the library said it
} libmsg_entry;

#define LIBMSG_MAX_DISTINCT 16

typedef struct {
    libmsg_entry items[LIBMSG_MAX_DISTINCT];
    int n;
    long dropped;   // messages past LIBMSG_MAX_DISTINCT distinct texts
} libmsg_list;

// Installs the GLib log handler for every domain; once per process, before
// threads start (image_init and the other libvips users call it).
void libmsg_init(void);
// Warnings are dropped from now on (criticals and errors still print).
void libmsg_set_quiet(bool quiet);

// Messages raised on this thread go to *l (zeroed by the caller) until
// libmsg_capture(NULL).
void libmsg_capture(libmsg_list *l);
// A library's warning: into this thread's capture, or printed now as
// "tool: library: warning: text".
void libmsg_warn(const char *library, const char *text);
// Prints the captured warnings as "tool: where: warning: text" (with
// " (N times)" when repeated), unless quiet; then frees them.
void libmsg_report(const char *where, libmsg_list *l);
void libmsg_list_free(libmsg_list *l);

#endif
