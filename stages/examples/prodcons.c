/*
 * prodcons.c — producers and consumers over one channel: Go's
 *
 *     jobs := make(chan *Job, 64)
 *     var producers, consumers sync.WaitGroup
 *     for p := 0; p < 3; p++ { producers.Add(1); go produce(p) }
 *     for c := 0; c < 2; c++ { consumers.Add(1); go consume(c) }
 *     producers.Wait(); close(jobs)        // no more sends: receivers drain
 *     consumers.Wait()
 *
 * written with weir_chan, weir_go and weir_wg. Each job is malloc'd by its
 * producer and freed by whichever consumer receives it: sending moves
 * ownership, as in weir's own pipelines.
 *
 *   cc -o prodcons prodcons.c $(pkg-config --cflags --libs weir)
 *   ./prodcons
 */
#include <weir.h>

#include <stdio.h>
#include <stdlib.h>

#define PRODUCERS 3
#define CONSUMERS 2
#define JOBS_EACH 1000 /* per producer: values 1..JOBS_EACH */

typedef struct job {
    int producer;
    long value;
} job;

/* What a goroutine closes over in Go: its arguments and where to report. */
typedef struct producer {
    int id;
    weir_chan *jobs;
    weir_wg *done;
    int err;
} producer;

typedef struct consumer {
    weir_chan *jobs;
    weir_wg *done;
    long count, sum;
    long per_producer[PRODUCERS];
    int err;
} consumer;

static void produce(void *arg)
{
    producer *p = arg;
    for (long v = 1; v <= JOBS_EACH && !p->err; v++) {
        job *j = malloc(sizeof *j);
        if (!j) {
            p->err = WEIR_ENOMEM;
            break;
        }
        *j = (job){p->id, v};
        /* Blocks while the channel is full: the consumers set the pace.
         * No context here (NULL): this send is never cancelled. */
        int rc = weir_chan_send(p->jobs, j, NULL);
        if (rc) {        /* WEIR_ECLOSED: nobody will receive it */
            free(j);     /* a failed send leaves the job ours */
            p->err = rc;
        }
    }
    weir_wg_done(p->done);
}

static void consume(void *arg)
{
    consumer *c = arg;
    void *item;
    int rc;
    /* Go's `for j := range jobs`: receive until closed and drained. */
    while ((rc = weir_chan_recv(c->jobs, &item, NULL)) == 0) {
        job *j = item;
        c->count++;
        c->sum += j->value;
        c->per_producer[j->producer]++;
        free(j);
    }
    if (rc != WEIR_ECLOSED) c->err = rc;
    weir_wg_done(c->done);
}

int main(void)
{
    weir_chan *jobs;
    weir_wg *produced, *consumed;
    /* MPMC: several threads send and several receive on this channel.
     * (WEIR_CHAN_SPSC is for exactly one sender and one receiver.) */
    int rc = weir_chan_create(&jobs, 64, WEIR_CHAN_MPMC);
    if (rc) {
        fprintf(stderr, "prodcons: %s\n", weir_strerror(rc));
        return 1;
    }
    if ((rc = weir_wg_create(&produced)) || (rc = weir_wg_create(&consumed))) {
        fprintf(stderr, "prodcons: %s\n", weir_strerror(rc));
        return 1;
    }

    producer ps[PRODUCERS];
    consumer cs[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        cs[i] = (consumer){.jobs = jobs, .done = consumed};
        weir_wg_add(consumed, 1); /* before starting, as in Go */
        if ((rc = weir_go(consume, &cs[i]))) {
            fprintf(stderr, "prodcons: %s\n", weir_strerror(rc));
            return 1;
        }
    }
    for (int i = 0; i < PRODUCERS; i++) {
        ps[i] = (producer){.id = i, .jobs = jobs, .done = produced};
        weir_wg_add(produced, 1);
        if ((rc = weir_go(produce, &ps[i]))) {
            fprintf(stderr, "prodcons: %s\n", weir_strerror(rc));
            return 1;
        }
    }

    /* Close from the sending side once every send is done: receivers then
     * take what is buffered and see WEIR_ECLOSED. */
    weir_wg_wait(produced, NULL);
    weir_chan_close(jobs);
    weir_wg_wait(consumed, NULL);

    long count = 0, sum = 0, per_producer[PRODUCERS] = {0};
    int failed = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        count += cs[i].count;
        sum += cs[i].sum;
        for (int p = 0; p < PRODUCERS; p++) per_producer[p] += cs[i].per_producer[p];
        failed |= cs[i].err != 0;
    }
    for (int i = 0; i < PRODUCERS; i++) failed |= ps[i].err != 0;
    printf("%d producers sent %d jobs each into a channel of %zu\n", PRODUCERS, JOBS_EACH,
           weir_chan_cap(jobs));
    printf("%d consumers received %ld jobs, sum %ld (expected %ld)\n", CONSUMERS, count,
           sum, (long)PRODUCERS * JOBS_EACH * (JOBS_EACH + 1) / 2);
    for (int p = 0; p < PRODUCERS; p++)
        printf("  from producer %d: %ld\n", p, per_producer[p]);
    printf("left in the channel: %zu\n", weir_chan_len(jobs));

    weir_wg_destroy(produced);
    weir_wg_destroy(consumed);
    weir_chan_destroy(jobs);
    return failed || count != (long)PRODUCERS * JOBS_EACH ? 1 : 0;
}
