#include "libmsg.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static bool quiet;
static _Thread_local libmsg_list *capture;

void libmsg_set_quiet(bool q) { quiet = q; }

void libmsg_capture(libmsg_list *l) { capture = l; }

// One line: GLib's messages may end in a newline, libpng's never do.
static void trimmed(const char *text, char *buf, size_t len)
{
    snprintf(buf, len, "%s", text ? text : "");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
}

void libmsg_warn(const char *library, const char *text)
{
    char line[512];
    trimmed(text, line, sizeof line);
    libmsg_list *l = capture;
    if (!l) {
        if (!quiet)
            warnf(library, "warning: %s", line);
        return;
    }
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i].text, line) == 0) {
            l->items[i].count++;
            return;
        }
    if (l->n == LIBMSG_MAX_DISTINCT) {
        l->dropped++;
        return;
    }
    l->items[l->n++] = (libmsg_entry){xstrdup(line), 1};
}

void libmsg_report(const char *where, libmsg_list *l)
{
    for (int i = 0; i < l->n && !quiet; i++) {
        if (l->items[i].count > 1)
            warnf(where, "warning: %s (%d times)", l->items[i].text, l->items[i].count);
        else
            warnf(where, "warning: %s", l->items[i].text);
    }
    if (l->dropped && !quiet)
        warnf(where, "warning: %ld more library messages", l->dropped);
    libmsg_list_free(l);
}

void libmsg_list_free(libmsg_list *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->items[i].text);
    *l = (libmsg_list){0};
}

// "VIPS" -> "libvips", "GLib-GObject" -> "glib-gobject": the library in a
// message outside a capture.
static const char *library_name(const char *domain, char *buf, size_t len)
{
    if (!domain || strcmp(domain, "VIPS") == 0)
        return "libvips";
    size_t i = 0;
    for (; domain[i] && i + 1 < len; i++)
        buf[i] = (char)(domain[i] >= 'A' && domain[i] <= 'Z' ? domain[i] - 'A' + 'a' : domain[i]);
    buf[i] = 0;
    return buf;
}

static void on_glib_message(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
    (void)data;
    char lib[64], line[512];
    const char *name = library_name(domain, lib, sizeof lib);
    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) {
        trimmed(message, line, sizeof line);
        warnf(name, "%s", line);
    } else if (level & G_LOG_LEVEL_WARNING) {
        libmsg_warn(name, message);
    }
    // Messages, info and debug: GLib's default prints them only when asked
    // through G_MESSAGES_DEBUG; they are not for our users.
}

void libmsg_init(void)
{
    g_log_set_default_handler(on_glib_message, NULL);
    // libvips logs to its own domain; a domain's handler goes before the
    // default one, so set it too.
    g_log_set_handler("VIPS", G_LOG_LEVEL_MASK | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION, on_glib_message,
                      NULL);
}
