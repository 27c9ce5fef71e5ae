// SPDX-License-Identifier: GPL-2.0

#include <linux/genalloc.h>

__rust_helper unsigned long
rust_helper_gen_pool_alloc_owner(struct gen_pool *pool, size_t size, void **owner)
{
	return gen_pool_alloc_owner(pool, size, owner);
}
