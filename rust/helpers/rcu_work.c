// SPDX-License-Identifier: GPL-2.0

#include <linux/workqueue.h>

__rust_helper bool rust_helper_queue_rcu_work_dfl_long(struct rcu_work *rwork,
						       work_func_t func)
{
	INIT_RCU_WORK(rwork, func);
	return queue_rcu_work(system_dfl_long_wq, rwork);
}
