#include <stdio.h>
#include <ufault/ufault.h>

int main(void)
{
	/* Link-level check only: a symbol from the installed shared library. */
	printf("%s\n", ufault_lock_mode_name(UFAULT_LOCK_SPEC));
	return 0;
}
