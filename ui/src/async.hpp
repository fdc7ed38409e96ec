// Hilum ui: running long work off the GUI thread. `work` runs on Qt's global thread pool
// (QtConcurrent::run) and returns its result as a value (an app::Result or a struct carrying its
// error); `done` then runs on the GUI thread, in `context`'s thread, unless `context` was destroyed
// first. Progress callbacks of the engine are forwarded with post_to_gui.
#pragma once

#include <QFutureWatcher>
#include <QMetaObject>
#include <QObject>
#include <QPointer>
#include <QThreadPool>
#include <QtConcurrent/QtConcurrentRun>

#include <memory>
#include <type_traits>
#include <utility>

namespace hilum::ui {

// Separate pools so that opening an image never queues behind inference or a long job:
// display_pool() decodes and renders (2 threads), ai_pool() runs predictions and attention maps
// (1 thread; the engine spreads its own work over the cores), and Qt's global pool the rest
// (worklist queries, import, export, training).
QThreadPool* display_pool();
QThreadPool* ai_pool();

template <typename Work, typename Done>
void run_async(QObject* context, QThreadPool* pool, Work work, Done done) {
  using T = std::invoke_result_t<Work&>;
  // Held through a shared_ptr so T needs neither a default constructor nor a copy.
  using Holder = std::shared_ptr<T>;
  auto* watcher = new QFutureWatcher<Holder>(context);
  QObject::connect(watcher, &QFutureWatcherBase::finished, context,
                   [watcher, done = std::move(done)]() mutable {
                     Holder result = watcher->result();
                     watcher->deleteLater();
                     if (result) done(std::move(*result));
                   });
  watcher->setFuture(QtConcurrent::run(pool, [work = std::move(work)]() mutable { return std::make_shared<T>(work()); }));
}

// The same on Qt's global pool.
template <typename Work, typename Done>
void run_async(QObject* context, Work work, Done done) {
  run_async(context, QThreadPool::globalInstance(), std::move(work), std::move(done));
}

// Calls `f` on `context`'s thread (queued); dropped when `context` is gone.
template <typename F>
void post_to_gui(QObject* context, F f) {
  QMetaObject::invokeMethod(context, std::move(f), Qt::QueuedConnection);
}

}  // namespace hilum::ui
