/*
 * berth's stand-in for the nginx images critest runs
 * (registry.k8s.io/e2e-test-images/nginx and cri-tools' hostnet-nginx):
 * what the specs look at, nothing more.
 *
 *   nginx [-p PORT] [-g DIRECTIVES]
 *
 * - It re-executes itself once so that its command line reads
 *   "nginx: master process nginx -g daemon off;" (the PID namespace specs
 *   grep /proc/1/cmdline for "master process") while its command name stays
 *   "nginx" (pidof nginx). -g is accepted and ignored.
 * - It writes its pid to /var/run/nginx.pid once it listens.
 * - It answers every request on PORT (default 80), IPv6 and IPv4, with
 *   200 and /usr/share/nginx/html/index.html (or a built-in page).
 * - SIGTERM, SIGINT and SIGQUIT end it with status 0: as a container's PID 1
 *   it would otherwise ignore them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define TITLE "nginx: master process nginx -g daemon off;"
#define PID_FILE "/var/run/nginx.pid"
#define INDEX "/usr/share/nginx/html/index.html"

static const char builtin_page[] =
	"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
	"<body><h1>Welcome to nginx!</h1><p>berth's stand-in.</p></body></html>\n";

static void done(int sig)
{
	(void)sig;
	unlink(PID_FILE);
	_exit(0);
}

static void die(const char *what)
{
	fprintf(stderr, "nginx: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Becomes "nginx: master process ..." by executing its own file again. */
static void retitle(int argc, char **argv)
{
	char self[PATH_MAX];
	ssize_t n;
	char **args;
	int i;

	if (strcmp(argv[0], TITLE) == 0)
		return;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		die("readlink /proc/self/exe");
	self[n] = '\0';
	args = calloc((size_t)argc + 1, sizeof(*args));
	if (!args)
		die("calloc");
	args[0] = TITLE;
	for (i = 1; i < argc; i++)
		args[i] = argv[i];
	execv(self, args);
	die("execv");
}

static char *page(size_t *len)
{
	static char buf[64 * 1024];
	int fd = open(INDEX, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf));
		close(fd);
		if (n > 0) {
			*len = (size_t)n;
			return buf;
		}
	}
	*len = sizeof(builtin_page) - 1;
	return (char *)builtin_page;
}

static int listen_on(int port)
{
	int one = 1, zero = 0;
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0) {
		struct sockaddr_in6 a6 = {0};

		a6.sin6_family = AF_INET6;
		a6.sin6_port = htons((unsigned short)port);
		a6.sin6_addr = in6addr_any;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0)
			return fd;
		close(fd);
	}
	/* No IPv6 here: IPv4 only. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	{
		struct sockaddr_in a4 = {0};

		a4.sin_family = AF_INET;
		a4.sin_port = htons((unsigned short)port);
		a4.sin_addr.s_addr = htonl(INADDR_ANY);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&a4, sizeof(a4)) != 0)
			die("bind");
	}
	return fd;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Reads the request head (up to the blank line) and answers it. */
static void serve(int c, const char *body, size_t len)
{
	char req[8192];
	size_t got = 0;
	char head[256];
	int n;

	while (got < sizeof(req) - 1) {
		ssize_t r = read(c, req + got, sizeof(req) - 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	if (got == 0)
		return;
	req[got] = '\0';
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		     len);
	write_all(c, head, (size_t)n);
	if (strncmp(req, "HEAD ", 5) != 0)
		write_all(c, body, len);
}

int main(int argc, char **argv)
{
	struct sigaction sa = {0};
	struct timeval tv = {.tv_sec = 10};
	int port = 80, opt, fd;
	size_t len;
	const char *body;
	FILE *pid;

	retitle(argc, argv);
	while ((opt = getopt(argc, argv, "p:g:")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'g':
			break;
		default:
			fprintf(stderr, "usage: nginx [-p PORT] [-g DIRECTIVES]\n");
			return 2;
		}
	}
	sa.sa_handler = done;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	body = page(&len);
	fd = listen_on(port);
	if (listen(fd, 128) != 0)
		die("listen");
	pid = fopen(PID_FILE, "w");
	if (pid) {
		fprintf(pid, "%d\n", (int)getpid());
		fclose(pid);
	}
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		serve(c, body, len);
		close(c);
	}
}
