/* sdnotify: READY, STOPPING and WATCHDOG for systemd. See sdnotify.h. */
#include "sdnotify.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "wire.h"

int
sdn_send(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (path == NULL || path[0] == '\0')
		return 0;
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	size_t n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* an abstract socket */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	ssize_t w = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
	close(fd);
	return w == (ssize_t)strlen(msg) ? 0 : -1;
}

static struct {
	pthread_t thr;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	int64_t period_ms; /* systemd's watchdog period */
	int64_t (*alive)(void);
} W = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void *
watchdog_main(void *arg)
{
	(void)arg;
	int64_t half = W.period_ms / 2 > 0 ? W.period_ms / 2 : 1;
	bool said = false;
	pthread_mutex_lock(&W.mu);
	while (!W.stop) {
		pthread_mutex_unlock(&W.mu);
		int64_t since = wire_mono_ms() - W.alive();
		if (since <= half + 1000) {
			sdn_send("WATCHDOG=1");
			said = false;
		} else if (!said) {
			slog_error("the engine loop has not run for %lld ms: systemd's watchdog is "
				   "no longer fed and will restart sagad",
			    (long long)since);
			said = true;
		}
		pthread_mutex_lock(&W.mu);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t ns = ts.tv_nsec + (half % 1000) * 1000000;
		ts.tv_sec += (time_t)(half / 1000 + ns / 1000000000);
		ts.tv_nsec = (long)(ns % 1000000000);
		while (!W.stop && pthread_cond_timedwait(&W.cv, &W.mu, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&W.mu);
	return NULL;
}

void
sdn_watchdog_start(int64_t (*alive)(void))
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	if (usec == NULL || getenv("NOTIFY_SOCKET") == NULL)
		return;
	if (pid != NULL && strtol(pid, NULL, 10) != (long)getpid())
		return;
	long long us = strtoll(usec, NULL, 10);
	if (us <= 0)
		return;
	W.period_ms = us / 1000 > 0 ? us / 1000 : 1;
	W.alive = alive;
	W.stop = false;
	if (pthread_create(&W.thr, NULL, watchdog_main, NULL) == 0) {
		W.running = true;
		slog_info("systemd watchdog: fed every %lld ms while the engine loop runs",
		    (long long)(W.period_ms / 2));
	}
}

void
sdn_watchdog_stop(void)
{
	if (!W.running)
		return;
	pthread_mutex_lock(&W.mu);
	W.stop = true;
	pthread_cond_broadcast(&W.cv);
	pthread_mutex_unlock(&W.mu);
	pthread_join(W.thr, NULL);
	W.running = false;
}
