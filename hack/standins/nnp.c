/*
 * berth's stand-in for registry.k8s.io/e2e-test-images/nonewprivs, the
 * program critest's NoNewPrivs specs run: installed setuid root, it prints
 * the effective uid it runs with. Started as a non-root user it prints 0,
 * unless no_new_privs kept the setuid bit from taking effect.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
