/*
 * sdnotify: systemd's service notification protocol (sd_notify(3)),
 * without libsystemd. With Type=notify, systemd learns that sagad is ready
 * (READY=1, once it serves requests), that it is stopping (STOPPING=1, on
 * SIGTERM), and, with WatchdogSec=, that its engine loop is alive
 * (WATCHDOG=1 every half period while the loop has run within one): a hung
 * engine stops the pings and systemd restarts sagad. Everything here is a
 * no-op when NOTIFY_SOCKET is unset (not started by systemd).
 */
#ifndef SAGAD_SDNOTIFY_H
#define SAGAD_SDNOTIFY_H

#include <stdint.h>

/* Sends one notification ("READY=1", ...); 0, or -1 if it could not. */
int sdn_send(const char *msg);
/* Starts the watchdog thread if systemd asked for one (WATCHDOG_USEC, and
 * WATCHDOG_PID unset or ours). alive() gives the monotonic ms at which the
 * engine loop last ran. */
void sdn_watchdog_start(int64_t (*alive)(void));
void sdn_watchdog_stop(void);

#endif
