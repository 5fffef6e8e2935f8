/* Entry memory: a size-class slab allocator over 16 KiB pages from mmap.
 *
 * Why not malloc. Expiring or deleting a million entries frees a million
 * small chunks. glibc parks those in fastbins and coalesces them all at once
 * the next time anyone in the process asks for a large block or trims: a
 * 10-20 ms stall in some unrelated call, and RSS that does not come back
 * until then. A slab frees in O(1), and a page whose last object goes is
 * unmapped on the spot, so memory returns as keys go and no call pays for
 * another's frees. It also drops malloc's 8-byte header and 16-byte rounding:
 * objects are rounded to 8 bytes only.
 *
 *   page (16 KiB, 16 KiB-aligned):
 *   [SlabPage header | obj | obj | obj | ... ]       all objects one size
 *
 * The page of an object is its address with the low 14 bits cleared. A page
 * with free objects sits on its class's `partial` list; a full page is on no
 * list; an empty page is unmapped, except that one empty page per class is
 * kept in `spare` so a key set and deleted in a loop does not mmap each time.
 * Objects above SLAB_MAX_OBJECT bytes, and every object in sanitizer builds
 * (so AddressSanitizer sees each entry), come from malloc instead.
 *
 * Bookkeeping cost: 48 bytes per 16 KiB page, plus up to one object size of
 * tail slack per page (at most 3% with objects up to 512 bytes). An engine
 * holds at least one page per size class in use, so tiny engines cost tens
 * of KiB rather than bytes.
 */
#ifndef KVSTORE_SLAB_H
#define KVSTORE_SLAB_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SLAB_PAGE_BYTES ((size_t)16 * 1024)
#define SLAB_GRANULE 8
#define SLAB_MAX_OBJECT 512
#define SLAB_CLASSES (SLAB_MAX_OBJECT / SLAB_GRANULE + 1)

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KV_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define KV_UNDER_ASAN 1
#endif

typedef struct SlabPage {
    struct SlabPage *prev, *next;   /* partial list of its class */
    void *free_list;                /* freed objects, linked through their first word */
    char *bump;                     /* never-used space starts here */
    uint32_t used;                  /* live objects */
    uint32_t object_bytes;
} SlabPage;

typedef struct Slab {
    SlabPage *partial[SLAB_CLASSES];
    SlabPage *spare[SLAB_CLASSES];
    size_t *used_bytes;             /* the owner's memory counter */
} Slab;

/* Whole pages (or any large block): mmap'd, so freeing never touches the
 * malloc heap. Zero-filled. */
static inline void *kv_map(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static inline void kv_unmap(void *p, size_t bytes) {
    if (p != NULL) munmap(p, bytes);
}

static inline size_t kv_page_round(size_t bytes) {
    return (bytes + 4095) & ~(size_t)4095;
}

static SlabPage *slab_map_page(void) {
    /* Map twice the size and cut to an aligned page. */
    char *raw = (char *)kv_map(2 * SLAB_PAGE_BYTES);
    if (raw == NULL) return NULL;
    uintptr_t aligned = ((uintptr_t)raw + SLAB_PAGE_BYTES - 1) & ~(uintptr_t)(SLAB_PAGE_BYTES - 1);
    size_t head = aligned - (uintptr_t)raw;
    if (head) munmap(raw, head);
    size_t tail = SLAB_PAGE_BYTES - head;
    if (tail) munmap((char *)aligned + SLAB_PAGE_BYTES, tail);
    return (SlabPage *)aligned;
}

static inline size_t slab_class_of(size_t bytes) {
    return (bytes + SLAB_GRANULE - 1) / SLAB_GRANULE;
}

static inline void slab_init(Slab *slab, size_t *used_bytes) {
    memset(slab, 0, sizeof(*slab));
    slab->used_bytes = used_bytes;
}

static inline void slab_unlink(SlabPage **head, SlabPage *page) {
    if (page->prev) page->prev->next = page->next; else *head = page->next;
    if (page->next) page->next->prev = page->prev;
    page->prev = page->next = NULL;
}

static inline void slab_push(SlabPage **head, SlabPage *page) {
    page->prev = NULL;
    page->next = *head;
    if (*head) (*head)->prev = page;
    *head = page;
}

static void *slab_alloc(Slab *slab, size_t bytes) {
#ifdef KV_UNDER_ASAN
    const int use_malloc = 1;
#else
    const int use_malloc = bytes > SLAB_MAX_OBJECT;
#endif
    if (use_malloc) {
        void *p = malloc(bytes);
        if (p) *slab->used_bytes += (bytes + 8 + 15) & ~(size_t)15;
        return p;
    }
    size_t cls = slab_class_of(bytes);
    size_t object_bytes = cls * SLAB_GRANULE;
    SlabPage *page = slab->partial[cls];
    if (page == NULL) {
        page = slab->spare[cls];
        if (page != NULL) {
            slab->spare[cls] = NULL;
        } else {
            page = slab_map_page();
            if (page == NULL) return NULL;
            *slab->used_bytes += SLAB_PAGE_BYTES;
            page->free_list = NULL;
            page->bump = (char *)page + ((sizeof(SlabPage) + 15) & ~(size_t)15);
            page->used = 0;
            page->object_bytes = (uint32_t)object_bytes;
        }
        slab_push(&slab->partial[cls], page);
    }
    void *p;
    if (page->free_list != NULL) {
        p = page->free_list;
        memcpy(&page->free_list, p, sizeof(void *));
    } else {
        p = page->bump;
        page->bump += object_bytes;
    }
    page->used++;
    int full = page->free_list == NULL &&
               (size_t)(page->bump - (char *)page) + object_bytes > SLAB_PAGE_BYTES;
    if (full) slab_unlink(&slab->partial[cls], page);
    return p;
}

/* p must come from slab_alloc(slab, bytes) with the same `bytes`. */
static void slab_free(Slab *slab, void *p, size_t bytes) {
#ifdef KV_UNDER_ASAN
    const int use_malloc = 1;
#else
    const int use_malloc = bytes > SLAB_MAX_OBJECT;
#endif
    if (p == NULL) return;
    if (use_malloc) {
        *slab->used_bytes -= (bytes + 8 + 15) & ~(size_t)15;
        free(p);
        return;
    }
    size_t cls = slab_class_of(bytes);
    SlabPage *page = (SlabPage *)((uintptr_t)p & ~(uintptr_t)(SLAB_PAGE_BYTES - 1));
    int was_full = page->free_list == NULL &&
                   (size_t)(page->bump - (char *)page) + page->object_bytes > SLAB_PAGE_BYTES;
    memcpy(p, &page->free_list, sizeof(void *));
    page->free_list = p;
    page->used--;
    if (was_full) slab_push(&slab->partial[cls], page);
    if (page->used == 0) {
        slab_unlink(&slab->partial[cls], page);
        if (slab->spare[cls] == NULL) {
            /* Reset so it is handed out like a fresh page. */
            page->free_list = NULL;
            page->bump = (char *)page + ((sizeof(SlabPage) + 15) & ~(size_t)15);
            slab->spare[cls] = page;
        } else {
            *slab->used_bytes -= SLAB_PAGE_BYTES;
            munmap(page, SLAB_PAGE_BYTES);
        }
    }
}

/* Unmap the spare pages (the engine is empty, or being destroyed). Live
 * objects must already be freed: pages on partial lists are then gone too. */
static void slab_release_spares(Slab *slab) {
    for (size_t cls = 0; cls < SLAB_CLASSES; cls++) {
        if (slab->spare[cls] != NULL) {
            *slab->used_bytes -= SLAB_PAGE_BYTES;
            munmap(slab->spare[cls], SLAB_PAGE_BYTES);
            slab->spare[cls] = NULL;
        }
    }
}

#endif
