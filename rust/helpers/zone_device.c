// SPDX-License-Identifier: GPL-2.0

#include <linux/mm.h>
#include <linux/page_ref.h>
#include <linux/percpu-refcount.h>

__rust_helper struct page *rust_helper_virt_to_page(const void *kaddr)
{
	return virt_to_page(kaddr);
}

__rust_helper void rust_helper_set_page_count(struct page *page, int v)
{
	set_page_count(page, v);
}

__rust_helper int rust_helper_page_ref_count(const struct page *page)
{
	return page_ref_count(page);
}

__rust_helper void rust_helper_put_page(struct page *page)
{
	put_page(page);
}

__rust_helper bool rust_helper_percpu_ref_tryget_live_rcu(struct percpu_ref *ref)
{
	return percpu_ref_tryget_live_rcu(ref);
}

__rust_helper void rust_helper_percpu_ref_get(struct percpu_ref *ref)
{
	percpu_ref_get(ref);
}

__rust_helper void rust_helper_percpu_ref_put(struct percpu_ref *ref)
{
	percpu_ref_put(ref);
}
