// SPDX-License-Identifier: GPL-2.0

#include <linux/huge_mm.h>
#include <linux/memremap.h>
#include <linux/mm.h>
#include <linux/page_ref.h>
#include <linux/percpu-refcount.h>
#include <linux/sched/signal.h>

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

__rust_helper void rust_helper_zone_device_get_page(struct page *page)
{
	get_page(page);
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

__rust_helper void *rust_helper_page_zone_device_data(struct page *page)
{
	return page->zone_device_data;
}

__rust_helper void rust_helper_page_set_zone_device_data(struct page *page, void *data)
{
	page->zone_device_data = data;
}

__rust_helper void rust_helper_zone_device_cond_resched(void)
{
	cond_resched();
}

__rust_helper bool rust_helper_zone_device_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}

__rust_helper unsigned long rust_helper_zone_device_pgmap_index(struct page *page)
{
	return page_to_pfn(page) - PHYS_PFN(page_pgmap(page)->range.start);
}

__rust_helper void rust_helper_i_mmap_lock_read(struct address_space *mapping)
{
	i_mmap_lock_read(mapping);
}

__rust_helper void rust_helper_i_mmap_unlock_read(struct address_space *mapping)
{
	i_mmap_unlock_read(mapping);
}

__rust_helper unsigned long
rust_helper_zone_device_next_untagged(struct page *first, unsigned long from,
				      unsigned long end, void *tag)
{
	unsigned long pfn = page_to_pfn(first);

	for (; from < end; from++)
		if (pfn_to_page(pfn + from)->zone_device_data != tag)
			break;
	return from;
}

__rust_helper unsigned long rust_helper_zone_device_pfn(struct page *page)
{
	return page_to_pfn(page);
}

__rust_helper void rust_helper_zone_device_folio_make(struct page *page,
						      unsigned int order)
{
	zone_device_folio_init_unlocked(page_folio(page), page_pgmap(page), order);
}

__rust_helper bool rust_helper_zone_device_is_folio_head(struct page *page,
							 unsigned int order)
{
	struct folio *folio = page_folio(page);

	return &folio->page == page && folio_order(folio) == order &&
	       folio_is_zone_device(folio) && !folio_test_anon(folio);
}

__rust_helper vm_fault_t rust_helper_zone_device_insert_folio_pmd(struct vm_fault *vmf,
								  struct page *page,
								  bool write)
{
#ifdef CONFIG_TRANSPARENT_HUGEPAGE
	pmd_t pmd = pmdp_get_lockless(vmf->pmd);

	/* A page table below the PMD already: map single pages (as DAX does). */
	if (!pmd_none(pmd) && !pmd_trans_huge(pmd))
		return VM_FAULT_FALLBACK;
	return vmf_insert_folio_pmd(vmf, page_folio(page), write);
#else
	return VM_FAULT_FALLBACK;
#endif
}
