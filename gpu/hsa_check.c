/* Checks src/validate/hsa.rs against Debian's HSA headers (libhsa-runtime-dev):
 * every constant by value, every struct by size and offsets, every function by its type.
 * Compiled by `cargo xtask test` (xtask/src/validate.rs) with -Wall -Wextra -Werror; a
 * function whose type differs from the one declared in hsa.rs is an incompatible-pointer error.
 * Nothing runs: compiling is the test. */
#include <stddef.h>
#include <stdint.h>
#include <hsa/hsa.h>
#include <hsa/hsa_ext_amd.h>

#define SAME(c, v) _Static_assert((c) == (v), #c " differs from src/validate/hsa.rs")

SAME(HSA_STATUS_SUCCESS, 0x0);
SAME(HSA_STATUS_ERROR_OUT_OF_RESOURCES, 0x1008);
SAME(HSA_SYSTEM_INFO_VERSION_MAJOR, 0);
SAME(HSA_SYSTEM_INFO_VERSION_MINOR, 1);
SAME(HSA_AGENT_INFO_NAME, 0);
SAME(HSA_AGENT_INFO_QUEUE_MAX_SIZE, 14);
SAME(HSA_AGENT_INFO_DEVICE, 17);
SAME(HSA_DEVICE_TYPE_CPU, 0);
SAME(HSA_DEVICE_TYPE_GPU, 1);
SAME(HSA_AMD_AGENT_INFO_BDFID, 0xA006);
SAME(HSA_AMD_AGENT_INFO_PRODUCT_NAME, 0xA009);
SAME(HSA_AMD_AGENT_INFO_HDP_FLUSH, 0xA00E);
SAME(HSA_AMD_AGENT_INFO_DOMAIN, 0xA00F);
SAME(HSA_AMD_MEMORY_POOL_INFO_SEGMENT, 0);
SAME(HSA_AMD_MEMORY_POOL_INFO_GLOBAL_FLAGS, 1);
SAME(HSA_AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_ALLOWED, 5);
SAME(HSA_AMD_SEGMENT_GLOBAL, 0);
SAME(HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_KERNARG_INIT, 1);
SAME(HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_FINE_GRAINED, 2);
SAME(HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_COARSE_GRAINED, 4);
SAME(HSA_PROFILE_FULL, 1);
SAME(HSA_DEFAULT_FLOAT_ROUNDING_MODE_DEFAULT, 0);
SAME(HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_OBJECT, 22);
SAME(HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_SIZE, 11);
SAME(HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_GROUP_SEGMENT_SIZE, 13);
SAME(HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_PRIVATE_SEGMENT_SIZE, 14);
SAME(HSA_QUEUE_TYPE_SINGLE, 1);
SAME(HSA_PACKET_TYPE_KERNEL_DISPATCH, 2);
SAME(HSA_PACKET_HEADER_TYPE, 0);
SAME(HSA_PACKET_HEADER_BARRIER, 8);
SAME(HSA_PACKET_HEADER_SCACQUIRE_FENCE_SCOPE, 9);
SAME(HSA_PACKET_HEADER_SCRELEASE_FENCE_SCOPE, 11);
SAME(HSA_FENCE_SCOPE_AGENT, 1);
SAME(HSA_FENCE_SCOPE_SYSTEM, 2);
SAME(HSA_KERNEL_DISPATCH_PACKET_SETUP_DIMENSIONS, 0);
SAME(HSA_SIGNAL_CONDITION_LT, 2);
SAME(HSA_WAIT_STATE_BLOCKED, 0);

/* Enums are passed as uint32_t in hsa.rs: they must be 4 bytes. */
SAME(sizeof(hsa_status_t), 4);
SAME(sizeof(hsa_agent_info_t), 4);
SAME(sizeof(hsa_amd_agent_info_t), 4);

/* Handles: one uint64_t each. */
SAME(sizeof(hsa_agent_t), 8);
SAME(sizeof(hsa_signal_t), 8);
SAME(sizeof(hsa_amd_memory_pool_t), 8);
SAME(sizeof(hsa_executable_t), 8);
SAME(sizeof(hsa_code_object_reader_t), 8);
SAME(sizeof(hsa_executable_symbol_t), 8);

SAME(sizeof(hsa_amd_hdp_flush_t), 16);
SAME(offsetof(hsa_amd_hdp_flush_t, HDP_MEM_FLUSH_CNTL), 0);
SAME(offsetof(hsa_amd_hdp_flush_t, HDP_REG_FLUSH_CNTL), 8);

SAME(sizeof(hsa_queue_t), 40);
SAME(offsetof(hsa_queue_t, type), 0);
SAME(offsetof(hsa_queue_t, features), 4);
SAME(offsetof(hsa_queue_t, base_address), 8);
SAME(offsetof(hsa_queue_t, doorbell_signal), 16);
SAME(offsetof(hsa_queue_t, size), 24);
SAME(offsetof(hsa_queue_t, reserved1), 28);
SAME(offsetof(hsa_queue_t, id), 32);

SAME(sizeof(hsa_kernel_dispatch_packet_t), 64);
SAME(offsetof(hsa_kernel_dispatch_packet_t, header), 0);
SAME(offsetof(hsa_kernel_dispatch_packet_t, setup), 2);
SAME(offsetof(hsa_kernel_dispatch_packet_t, workgroup_size_x), 4);
SAME(offsetof(hsa_kernel_dispatch_packet_t, workgroup_size_y), 6);
SAME(offsetof(hsa_kernel_dispatch_packet_t, workgroup_size_z), 8);
SAME(offsetof(hsa_kernel_dispatch_packet_t, reserved0), 10);
SAME(offsetof(hsa_kernel_dispatch_packet_t, grid_size_x), 12);
SAME(offsetof(hsa_kernel_dispatch_packet_t, grid_size_y), 16);
SAME(offsetof(hsa_kernel_dispatch_packet_t, grid_size_z), 20);
SAME(offsetof(hsa_kernel_dispatch_packet_t, private_segment_size), 24);
SAME(offsetof(hsa_kernel_dispatch_packet_t, group_segment_size), 28);
SAME(offsetof(hsa_kernel_dispatch_packet_t, kernel_object), 32);
SAME(offsetof(hsa_kernel_dispatch_packet_t, kernarg_address), 40);
SAME(offsetof(hsa_kernel_dispatch_packet_t, reserved2), 48);
SAME(offsetof(hsa_kernel_dispatch_packet_t, completion_signal), 56);

/* The functions, with the types hsa.rs declares (enums as uint32_t, via the typedefs). */
typedef hsa_status_t (*agent_cb)(hsa_agent_t, void *);
typedef hsa_status_t (*pool_cb)(hsa_amd_memory_pool_t, void *);
typedef void (*queue_cb)(hsa_status_t, hsa_queue_t *, void *);

hsa_status_t (*check_hsa_init)(void) = hsa_init;
hsa_status_t (*check_hsa_shut_down)(void) = hsa_shut_down;
hsa_status_t (*check_hsa_status_string)(hsa_status_t, const char **) = hsa_status_string;
hsa_status_t (*check_hsa_system_get_info)(hsa_system_info_t, void *) = hsa_system_get_info;
hsa_status_t (*check_hsa_iterate_agents)(agent_cb, void *) = hsa_iterate_agents;
hsa_status_t (*check_hsa_agent_get_info)(hsa_agent_t, hsa_agent_info_t, void *) = hsa_agent_get_info;
hsa_status_t (*check_hsa_amd_agent_iterate_memory_pools)(hsa_agent_t, pool_cb, void *) = hsa_amd_agent_iterate_memory_pools;
hsa_status_t (*check_hsa_amd_memory_pool_get_info)(hsa_amd_memory_pool_t, hsa_amd_memory_pool_info_t, void *) = hsa_amd_memory_pool_get_info;
hsa_status_t (*check_hsa_amd_memory_pool_allocate)(hsa_amd_memory_pool_t, size_t, uint32_t, void **) = hsa_amd_memory_pool_allocate;
hsa_status_t (*check_hsa_amd_memory_pool_free)(void *) = hsa_amd_memory_pool_free;
hsa_status_t (*check_hsa_amd_agents_allow_access)(uint32_t, const hsa_agent_t *, const uint32_t *, const void *) = hsa_amd_agents_allow_access;
hsa_status_t (*check_hsa_code_object_reader_create_from_memory)(const void *, size_t, hsa_code_object_reader_t *) = hsa_code_object_reader_create_from_memory;
hsa_status_t (*check_hsa_code_object_reader_destroy)(hsa_code_object_reader_t) = hsa_code_object_reader_destroy;
hsa_status_t (*check_hsa_executable_create_alt)(hsa_profile_t, hsa_default_float_rounding_mode_t, const char *, hsa_executable_t *) = hsa_executable_create_alt;
hsa_status_t (*check_hsa_executable_load_agent_code_object)(hsa_executable_t, hsa_agent_t, hsa_code_object_reader_t, const char *, hsa_loaded_code_object_t *) = hsa_executable_load_agent_code_object;
hsa_status_t (*check_hsa_executable_freeze)(hsa_executable_t, const char *) = hsa_executable_freeze;
hsa_status_t (*check_hsa_executable_destroy)(hsa_executable_t) = hsa_executable_destroy;
hsa_status_t (*check_hsa_executable_get_symbol_by_name)(hsa_executable_t, const char *, const hsa_agent_t *, hsa_executable_symbol_t *) = hsa_executable_get_symbol_by_name;
hsa_status_t (*check_hsa_executable_symbol_get_info)(hsa_executable_symbol_t, hsa_executable_symbol_info_t, void *) = hsa_executable_symbol_get_info;
hsa_status_t (*check_hsa_queue_create)(hsa_agent_t, uint32_t, hsa_queue_type32_t, queue_cb, void *, uint32_t, uint32_t, hsa_queue_t **) = hsa_queue_create;
hsa_status_t (*check_hsa_queue_destroy)(hsa_queue_t *) = hsa_queue_destroy;
uint64_t (*check_hsa_queue_add_write_index_screlease)(const hsa_queue_t *, uint64_t) = hsa_queue_add_write_index_screlease;
uint64_t (*check_hsa_queue_load_read_index_scacquire)(const hsa_queue_t *) = hsa_queue_load_read_index_scacquire;
hsa_status_t (*check_hsa_signal_create)(hsa_signal_value_t, uint32_t, const hsa_agent_t *, hsa_signal_t *) = hsa_signal_create;
hsa_status_t (*check_hsa_signal_destroy)(hsa_signal_t) = hsa_signal_destroy;
void (*check_hsa_signal_store_relaxed)(hsa_signal_t, hsa_signal_value_t) = hsa_signal_store_relaxed;
void (*check_hsa_signal_store_screlease)(hsa_signal_t, hsa_signal_value_t) = hsa_signal_store_screlease;
hsa_signal_value_t (*check_hsa_signal_wait_scacquire)(hsa_signal_t, hsa_signal_condition_t, hsa_signal_value_t, uint64_t, hsa_wait_state_t) = hsa_signal_wait_scacquire;

/* Enum-typed parameters declared as uint32_t in hsa.rs must be 4 bytes too. */
SAME(sizeof(hsa_system_info_t), 4);
SAME(sizeof(hsa_amd_memory_pool_info_t), 4);
SAME(sizeof(hsa_profile_t), 4);
SAME(sizeof(hsa_default_float_rounding_mode_t), 4);
SAME(sizeof(hsa_executable_symbol_info_t), 4);
SAME(sizeof(hsa_queue_type32_t), 4);
SAME(sizeof(hsa_signal_condition_t), 4);
SAME(sizeof(hsa_wait_state_t), 4);
SAME(sizeof(hsa_signal_value_t), 8);
SAME(sizeof(hsa_loaded_code_object_t), 8);
