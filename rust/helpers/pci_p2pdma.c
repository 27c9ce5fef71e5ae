// SPDX-License-Identifier: GPL-2.0

#include <linux/memremap.h>
#include <linux/pci.h>

__rust_helper unsigned long rust_helper_pci_resource_flags(struct pci_dev *pdev,
							    int bar)
{
	return pci_resource_flags(pdev, bar);
}

__rust_helper void rust_helper_put_dev_pagemap(struct dev_pagemap *pgmap)
{
	put_dev_pagemap(pgmap);
}
